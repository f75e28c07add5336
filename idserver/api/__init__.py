"""``/api/v1``: the JSON API for phones (browser pages and native apps alike)."""
