{#- The feature columns shared by customer_features (training) and customer_features_current
    (scoring): one list, so the two tables can never disagree. -#}
{% macro customer_feature_columns() -%}
    {{ return([
        'preferred_store_name',
        'tenure_days',
        'recency_days',
        'count_orders',
        'count_orders_last_30d',
        'count_orders_last_90d',
        'lifetime_spend',
        'spend_last_30d',
        'spend_prior_30d',
        'spend_last_90d',
        'spend_trend_30d',
        'avg_order_value',
        'food_item_share',
        'weekend_order_share',
    ]) }}
{%- endmacro %}
