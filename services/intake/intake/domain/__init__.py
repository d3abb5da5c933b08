"""Pure domain rules of the intake service: vocabulary, tenant rules, classification,
grading and same-matter matching (duplicates, group complaints). No I/O here; see README.md.
"""
