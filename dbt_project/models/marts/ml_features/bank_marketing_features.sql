-- One row per bank marketing contact, cleaned for modelling.
with

contacts as (
    select * from {{ ref('stg_bank__marketing_contacts') }}
),

final as (
    select
        contact_id,
        age,
        -- 'unknown' is the survey's missing value: make it NULL so the model's imputer
        -- (fitted on the training split) decides, instead of treating it as a category.
        nullif(job, 'unknown') as job,
        nullif(marital_status, 'unknown') as marital_status,
        nullif(education, 'unknown') as education,
        case credit_in_default when 'yes' then 1 when 'no' then 0 end as has_credit_in_default,
        case housing_loan when 'yes' then 1 when 'no' then 0 end as has_housing_loan,
        case personal_loan when 'yes' then 1 when 'no' then 0 end as has_personal_loan,
        contact_channel,
        contact_month,
        contact_day_of_week,
        -- call_duration_seconds is deliberately NOT a feature: it is only known after the
        -- call has ended, when the outcome is already decided (label leakage; the dataset's
        -- own notes say to keep it for benchmarks only).
        count_contacts_this_campaign,
        -- pdays = 999 means "never contacted before", not 999 days: split it into a flag
        -- and a NULL, so no model reads it as a very long gap.
        days_since_previous_contact <> 999 as was_previously_contacted,
        nullif(days_since_previous_contact, 999) as days_since_previous_contact,
        count_previous_contacts,
        previous_outcome,
        employment_variation_rate,
        consumer_price_index,
        consumer_confidence_index,
        euribor_3m_rate,
        count_employed_thousands,
        has_subscribed
    from contacts
)

select * from final
