-- One row per order with its item mix, the unit every customer feature aggregates.
with

orders as (
    select * from {{ ref('stg_jaffle_shop__orders') }}
),

order_items as (
    select * from {{ ref('stg_jaffle_shop__order_items') }}
),

products as (
    select * from {{ ref('stg_jaffle_shop__products') }}
),

items_per_order as (
    select
        order_items.order_id,
        count(*) as count_items,
        sum(case when products.is_food_item then 1 else 0 end) as count_food_items,
        sum(case when products.is_drink_item then 1 else 0 end) as count_drink_items,
        sum(case when products.is_food_item then products.product_price else 0 end) as food_amount,
        sum(case when products.is_drink_item then products.product_price else 0 end) as drink_amount
    from order_items
    inner join products on order_items.product_id = products.product_id
    group by order_items.order_id
),

final as (
    select
        orders.order_id,
        orders.customer_id,
        orders.store_id,
        coalesce(items_per_order.count_items, 0) as count_items,
        coalesce(items_per_order.count_food_items, 0) as count_food_items,
        coalesce(items_per_order.count_drink_items, 0) as count_drink_items,
        orders.subtotal,
        orders.tax_paid,
        orders.order_total,
        coalesce(items_per_order.food_amount, 0) as food_amount,
        coalesce(items_per_order.drink_amount, 0) as drink_amount,
        {{ is_weekend('orders.ordered_at') }} as is_weekend_order,
        orders.ordered_at
    from orders
    left join items_per_order on orders.order_id = items_per_order.order_id
)

select * from final
