"""The benchmark's report: pure functions of the saved runs (tables, statistics, significance, the site's
endpoints, headroom, figures) and the writing of the report files. Nothing here runs a model."""
