with

source as (
    select * from {{ source('jaffle_shop', 'raw_stores') }}
),

renamed as (
    select
        id as store_id,
        name as store_name,
        cast(tax_rate as {{ dbt.type_float() }}) as tax_rate,
        cast(opened_at as {{ dbt.type_timestamp() }}) as opened_at
    from source
)

select * from renamed
