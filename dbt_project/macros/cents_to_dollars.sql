{#- Money arrives in integer cents; marts speak dollars. -#}
{% macro cents_to_dollars(column_name) -%}
    {{ return(adapter.dispatch('cents_to_dollars')(column_name)) }}
{%- endmacro %}

{% macro default__cents_to_dollars(column_name) -%}
    cast(({{ column_name }} / 100.0) as numeric(16, 2))
{%- endmacro %}
