with

source as (
    select * from {{ source('bank', 'bank_marketing') }}
),

renamed as (
    select
        source_row_number as contact_id,
        age,
        job,
        marital as marital_status,
        education,
        {{ adapter.quote('default') }} as credit_in_default,
        housing as housing_loan,
        loan as personal_loan,
        contact as contact_channel,
        month as contact_month,
        day_of_week as contact_day_of_week,
        duration as call_duration_seconds,
        campaign as count_contacts_this_campaign,
        pdays as days_since_previous_contact,
        previous as count_previous_contacts,
        poutcome as previous_outcome,
        {{ adapter.quote('emp.var.rate') }} as employment_variation_rate,
        {{ adapter.quote('cons.price.idx') }} as consumer_price_index,
        {{ adapter.quote('cons.conf.idx') }} as consumer_confidence_index,
        euribor3m as euribor_3m_rate,
        {{ adapter.quote('nr.employed') }} as count_employed_thousands,
        y = 'yes' as has_subscribed
    from source
)

select * from renamed
