"""The networks of JSIA-ReID: G (generation.py), V (variation.py), F (feature.py),
and the model that owns them all (jsia.py)."""
