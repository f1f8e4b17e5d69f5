{#- Day-of-week numbering differs between engines, so the test for Saturday/Sunday is dispatched. -#}
{% macro is_weekend(timestamp_column) -%}
    {{ return(adapter.dispatch('is_weekend')(timestamp_column)) }}
{%- endmacro %}

{% macro default__is_weekend(timestamp_column) -%}
    (extract(isodow from {{ timestamp_column }}) >= 6)
{%- endmacro %}

{% macro spark__is_weekend(timestamp_column) -%}
    (dayofweek({{ timestamp_column }}) in (1, 7))
{%- endmacro %}
