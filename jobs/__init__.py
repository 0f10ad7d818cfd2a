"""Entry points users run locally or submit with `ray job submit`, plus their configs."""
