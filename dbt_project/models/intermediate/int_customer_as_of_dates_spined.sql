-- The grain of every customer feature row: each customer at each monthly as-of date after
-- their first order, plus the current snapshot date: the day after the last order seen, or
-- the var scoring_as_of_date (to replay scoring at a past date, as a scheduler would have).
-- A row's label window [as_of_date, as_of_date + horizon) is complete when it ends before
-- the data does; only such rows are used for training.
with

orders as (
    select * from {{ ref('stg_jaffle_shop__orders') }}
),

data_end as (
    select
        {{ dbt.dateadd('day', 1, dbt.date_trunc('day', 'max(ordered_at)')) }} as end_of_data_date,
        {% if var('scoring_as_of_date', none) -%}
        cast('{{ var("scoring_as_of_date") }}' as date) as current_as_of_date
        {%- else -%}
        {{ dbt.dateadd('day', 1, dbt.date_trunc('day', 'max(ordered_at)')) }} as current_as_of_date
        {%- endif %}
    from orders
),

monthly_as_of_dates as (
    select distinct
        cast({{ dbt.date_trunc('month', 'ordered_at') }} as date) as as_of_date
    from orders
),

as_of_dates as (
    select
        monthly_as_of_dates.as_of_date,
        false as is_current_snapshot,
        {{ dbt.dateadd('day', var('label_horizon_days'), 'monthly_as_of_dates.as_of_date') }}
            <= data_end.end_of_data_date as is_label_window_complete
    from monthly_as_of_dates
    cross join data_end
    where monthly_as_of_dates.as_of_date <> cast(data_end.current_as_of_date as date)
    union all
    select
        cast(current_as_of_date as date) as as_of_date,
        true as is_current_snapshot,
        false as is_label_window_complete
    from data_end
),

first_orders as (
    select
        customer_id,
        min(ordered_at) as first_ordered_at
    from orders
    group by customer_id
),

final as (
    select
        first_orders.customer_id,
        as_of_dates.as_of_date,
        as_of_dates.is_current_snapshot,
        as_of_dates.is_label_window_complete
    from first_orders
    inner join as_of_dates
        on first_orders.first_ordered_at < as_of_dates.as_of_date
)

select * from final
