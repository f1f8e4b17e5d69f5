with

stores as (
    select * from {{ ref('stg_jaffle_shop__stores') }}
)

select * from stores
