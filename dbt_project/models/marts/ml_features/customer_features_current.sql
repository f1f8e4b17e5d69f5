-- Scoring table: every customer at the current as-of date (the day after the last order,
-- or the var scoring_as_of_date), with the same features as customer_features and no
-- labels (the future is unknown).
with

features as (
    select * from {{ ref('int_customer_features_computed') }}
),

final as (
    select
        customer_id,
        as_of_date,
        {{ customer_feature_columns() | join(',\n        ') }}
    from features
    where is_current_snapshot
)

select * from final
