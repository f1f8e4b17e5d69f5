-- One row per customer with every model's latest prediction: ready for a BI tool.
with

customers as (
    select * from {{ ref('customers') }}
),

high_value as (
    select * from {{ source('ml', 'customer_high_value_predictions') }}
),

spend as (
    select * from {{ source('ml', 'customer_spend_predictions') }}
),

segments as (
    select * from {{ source('ml', 'customer_segment_predictions') }}
),

final as (
    select
        customers.customer_id,
        customers.customer_name,
        customers.customer_type,
        segments.cluster as segment,
        high_value.prediction as is_predicted_high_value,
        high_value.probability_true as high_value_probability,
        spend.prediction as predicted_spend_next_30d,
        customers.count_lifetime_orders,
        customers.lifetime_spend,
        high_value.model_version as high_value_model_version,
        spend.model_version as spend_model_version,
        segments.model_version as segment_model_version,
        customers.last_ordered_at,
        least(high_value.scored_at, spend.scored_at, segments.scored_at) as scored_at
    from customers
    left join high_value on customers.customer_id = high_value.customer_id
    left join spend on customers.customer_id = spend.customer_id
    left join segments on customers.customer_id = segments.customer_id
)

select * from final
