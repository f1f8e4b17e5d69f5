with

orders as (
    select * from {{ ref('int_orders_summarized') }}
),

final as (
    select
        order_id,
        customer_id,
        store_id,
        row_number() over (partition by customer_id order by ordered_at, order_id)
            as customer_order_number,
        count_items,
        count_food_items,
        count_drink_items,
        count_food_items > 0 as is_food_order,
        count_drink_items > 0 as is_drink_order,
        is_weekend_order,
        subtotal,
        tax_paid,
        order_total,
        food_amount,
        drink_amount,
        ordered_at
    from orders
)

select * from final
