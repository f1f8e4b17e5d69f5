-- Leakage guard: a feature row may only summarise orders strictly before its as_of_date.
-- Returns offending rows; the test passes when there are none.
select
    customer_id,
    as_of_date,
    first_ordered_at,
    last_ordered_at
from {{ ref('int_customer_features_computed') }}
where last_ordered_at >= as_of_date
    or first_ordered_at >= as_of_date
    or recency_days < 0
