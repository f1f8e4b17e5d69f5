-- Scoring table: every customer at the current as-of date (the day after the last order),
-- with the same features as customer_features and no labels (the future is unknown).
with

features as (
    select * from {{ ref('int_customer_features_computed') }}
),

final as (
    select
        customer_id,
        as_of_date,
        preferred_store_name,
        tenure_days,
        recency_days,
        count_orders,
        count_orders_last_30d,
        count_orders_last_90d,
        lifetime_spend,
        spend_last_30d,
        spend_prior_30d,
        spend_last_90d,
        spend_trend_30d,
        avg_order_value,
        food_item_share,
        weekend_order_share
    from features
    where is_current_snapshot
)

select * from final
