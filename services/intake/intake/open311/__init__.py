"""Open311 GeoReport v2 for call centers and partner systems: the service catalogue (one
service per complaint category), the translation of a service request into a complaint,
and the JSON/XML renderings of the published spec (http://wiki.open311.org/GeoReport_v2/).
Pure code; the router is intake/api/open311.py.
"""
