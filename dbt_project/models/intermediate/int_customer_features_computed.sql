{{ config(materialized="table") }}

-- Features and labels of each customer at each as-of date.
-- Leakage guard: every feature aggregates only orders strictly before as_of_date
-- (the `is_history` flag); labels aggregate only orders in the horizon after it.
{%- set horizon = var('label_horizon_days') %}
with

spine as (
    select * from {{ ref('int_customer_as_of_dates_spined') }}
),

orders as (
    select * from {{ ref('int_orders_summarized') }}
),

stores as (
    select * from {{ ref('stg_jaffle_shop__stores') }}
),

customer_orders as (
    select
        spine.customer_id,
        spine.as_of_date,
        orders.store_id,
        orders.order_total,
        orders.count_items,
        orders.count_food_items,
        orders.is_weekend_order,
        orders.ordered_at,
        orders.ordered_at < spine.as_of_date as is_history,
        orders.ordered_at >= spine.as_of_date as is_label_window,
        orders.ordered_at >= {{ dbt.dateadd('day', -30, 'spine.as_of_date') }} as is_last_30d,
        orders.ordered_at >= {{ dbt.dateadd('day', -60, 'spine.as_of_date') }}
            and orders.ordered_at < {{ dbt.dateadd('day', -30, 'spine.as_of_date') }} as is_prior_30d,
        orders.ordered_at >= {{ dbt.dateadd('day', -90, 'spine.as_of_date') }} as is_last_90d
    from spine
    inner join orders
        on spine.customer_id = orders.customer_id
        and orders.ordered_at < {{ dbt.dateadd('day', horizon, 'spine.as_of_date') }}
),

aggregated as (
    select
        customer_id,
        as_of_date,
        min(case when is_history then ordered_at end) as first_ordered_at,
        max(case when is_history then ordered_at end) as last_ordered_at,
        sum(case when is_history then 1 else 0 end) as count_orders,
        sum(case when is_history and is_last_30d then 1 else 0 end) as count_orders_last_30d,
        sum(case when is_history and is_last_90d then 1 else 0 end) as count_orders_last_90d,
        sum(case when is_history then order_total else 0 end) as lifetime_spend,
        sum(case when is_history and is_last_30d then order_total else 0 end) as spend_last_30d,
        sum(case when is_history and is_prior_30d then order_total else 0 end) as spend_prior_30d,
        sum(case when is_history and is_last_90d then order_total else 0 end) as spend_last_90d,
        sum(case when is_history then count_items else 0 end) as count_items,
        sum(case when is_history then count_food_items else 0 end) as count_food_items,
        sum(case when is_history and is_weekend_order then 1 else 0 end) as count_weekend_orders,
        sum(case when is_label_window then order_total else 0 end) as next_30d_spend,
        sum(case when is_label_window then 1 else 0 end) as next_30d_order_count
    from customer_orders
    group by customer_id, as_of_date
),

store_visits as (
    select
        customer_id,
        as_of_date,
        store_id,
        count(*) as count_store_orders
    from customer_orders
    where is_history
    group by customer_id, as_of_date, store_id
),

preferred_stores as (
    select
        customer_id,
        as_of_date,
        store_id,
        row_number() over (
            partition by customer_id, as_of_date
            order by count_store_orders desc, store_id
        ) as store_rank
    from store_visits
),

final as (
    select
        spine.customer_id,
        spine.as_of_date,
        spine.is_current_snapshot,
        spine.is_label_window_complete,
        stores.store_name as preferred_store_name,
        {{ dbt.datediff('aggregated.first_ordered_at', 'spine.as_of_date', 'day') }} as tenure_days,
        {{ dbt.datediff('aggregated.last_ordered_at', 'spine.as_of_date', 'day') }} as recency_days,
        aggregated.count_orders,
        aggregated.count_orders_last_30d,
        aggregated.count_orders_last_90d,
        aggregated.lifetime_spend,
        aggregated.spend_last_30d,
        aggregated.spend_prior_30d,
        aggregated.spend_last_90d,
        aggregated.spend_last_30d - aggregated.spend_prior_30d as spend_trend_30d,
        aggregated.lifetime_spend / aggregated.count_orders as avg_order_value,
        case when aggregated.count_items > 0
            then 1.0 * aggregated.count_food_items / aggregated.count_items
        end as food_item_share,
        1.0 * aggregated.count_weekend_orders / aggregated.count_orders as weekend_order_share,
        aggregated.next_30d_spend,
        aggregated.next_30d_order_count,
        ntile(4) over (
            partition by spine.as_of_date
            order by aggregated.next_30d_spend desc, spine.customer_id
        ) = 1 as is_high_value_next_30d,
        aggregated.first_ordered_at,
        aggregated.last_ordered_at
    from spine
    inner join aggregated
        on spine.customer_id = aggregated.customer_id
        and spine.as_of_date = aggregated.as_of_date
    left join preferred_stores
        on spine.customer_id = preferred_stores.customer_id
        and spine.as_of_date = preferred_stores.as_of_date
        and preferred_stores.store_rank = 1
    left join stores on preferred_stores.store_id = stores.store_id
)

select * from final
