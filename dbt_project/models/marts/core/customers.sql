with

customers as (
    select * from {{ ref('stg_jaffle_shop__customers') }}
),

orders as (
    select * from {{ ref('orders') }}
),

customer_orders as (
    select
        customer_id,
        count(*) as count_lifetime_orders,
        sum(order_total) as lifetime_spend,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at
    from orders
    group by customer_id
),

final as (
    select
        customers.customer_id,
        customers.customer_name,
        case when customer_orders.count_lifetime_orders > 1 then 'returning' else 'new' end
            as customer_type,
        customer_orders.count_lifetime_orders,
        customer_orders.lifetime_spend,
        customer_orders.first_ordered_at,
        customer_orders.last_ordered_at
    from customers
    inner join customer_orders on customers.customer_id = customer_orders.customer_id
)

select * from final
