with

order_items as (
    select * from {{ ref('stg_jaffle_shop__order_items') }}
),

orders as (
    select * from {{ ref('stg_jaffle_shop__orders') }}
),

products as (
    select * from {{ ref('stg_jaffle_shop__products') }}
),

supply_costs as (
    select
        product_id,
        sum(supply_cost) as supply_cost
    from {{ ref('stg_jaffle_shop__supplies') }}
    group by product_id
),

final as (
    select
        order_items.order_item_id,
        order_items.order_id,
        order_items.product_id,
        products.product_name,
        products.is_food_item,
        products.is_drink_item,
        products.product_price,
        supply_costs.supply_cost,
        orders.ordered_at
    from order_items
    inner join orders on order_items.order_id = orders.order_id
    inner join products on order_items.product_id = products.product_id
    left join supply_costs on order_items.product_id = supply_costs.product_id
)

select * from final
