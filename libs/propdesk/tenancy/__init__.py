from propdesk.tenancy.context import (
    ALL_PROJECTS,
    TenantContext,
    current_context,
    system_context,
    use_context,
)

__all__ = ["ALL_PROJECTS", "TenantContext", "current_context", "system_context", "use_context"]
