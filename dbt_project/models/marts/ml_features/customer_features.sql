-- Training table: one row per (customer_id, as_of_date) whose label window is complete.
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
        weekend_order_share,
        next_30d_spend,
        next_30d_order_count,
        is_high_value_next_30d
    from features
    where not is_current_snapshot
        and is_label_window_complete
)

select * from final
