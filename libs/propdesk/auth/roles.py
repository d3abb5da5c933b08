"""Staff roles, named after DOMAIN.md's "who is who"."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    TENANT_ADMIN = "tenant_admin"  # 物业公司管理员: onboarding, keys, rules
    INTAKE_CLERK = "intake_clerk"  # 接诉员 / 前台
    AFFAIRS_ASSISTANT = "affairs_assistant"  # 客服部事务助理
    CS_SUPERVISOR = "cs_supervisor"  # 客服主管
    DIRECTOR = "director"  # 管理处主任
    DEPARTMENT_HEAD = "department_head"  # 部门负责人
    HANDLER = "handler"  # 抄送办理员
    DUTY_LEADER = "duty_leader"  # 当值安保领班
    QUALITY = "quality"  # 品质部
    INTEGRATION = "integration"  # call-center / partner system using an API key
    OPERATOR = "operator"  # SaaS platform operator (cross-tenant views only)


SUPERVISOR_ROLES = frozenset({Role.CS_SUPERVISOR, Role.DIRECTOR, Role.TENANT_ADMIN})
