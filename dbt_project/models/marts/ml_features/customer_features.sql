-- Training table: one row per (customer_id, as_of_date) whose label window is complete.
with

features as (
    select * from {{ ref('int_customer_features_computed') }}
),

final as (
    select
        customer_id,
        as_of_date,
        {% for column in customer_feature_columns() -%}
        {{ column }},
        {% endfor -%}
        next_30d_spend,
        next_30d_order_count,
        is_high_value_next_30d
    from features
    where not is_current_snapshot
        and is_label_window_complete
)

select * from final
