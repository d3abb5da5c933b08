"""What the benchmark sends: the companies it onboards and the complaints it posts.

Complaints are composed from pools of realistic Chinese phrases so that two complaints in
the same project and category are usually *not* the same matter (intake's duplicate and
group detection compares place, building + category keyword, and bigram similarity), while
some are: repeated phones, shared public places and shared keywords in one building give
the few duplicates and group complaints a real day has. The response's `case.kind` is
counted so the report says how much grouping the run produced.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

# 400 projects. 200 complaints/s is a platform of thousands of estates (one gets a few
# dozen a day): with the 50 projects of earlier runs, each project took 4 complaints/s,
# every matter soon had three households, and by the dispatch phases 70-80 % of the
# complaints joined ever-growing groups. Fewer units per project keep onboarding short.
TENANTS = 20
PROJECTS_PER_TENANT = 20
BUILDINGS = 6
FLOORS = 6
ROOMS_PER_FLOOR = 2

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍建国红梅晨宇轩浩然思雨欣怡"

# One issue sentence per complaint; each names exactly one of its category's keywords, so
# two complaints in one building share a keyword only now and then.
ISSUES: dict[str, tuple[str, ...]] = {
    "facility_repair": (
        "卫生间天花板漏水，滴到了洗衣机上",
        "厨房墙角渗水，墙皮都起泡脱落了",
        "楼道里的水管半夜爆管，水流到电梯厅",
        "今天早上又停水了，物业没有提前通知",
        "单元楼突然停电，冰箱里的东西全化了",
        "电梯经常卡在七楼，门开了又关",
        "地下室排风机故障，嗡嗡响个不停",
        "楼下的路灯一直不亮，晚上回家很黑",
        "厨房下水道返味，疏通了两次还是不行",
        "高层水压太低，热水器都打不着火",
        "单元门禁对讲机门坏了，关不上",
        "阳台地漏堵塞，下雨天积水倒灌",
    ),
    "environment": (
        "楼道堆放的垃圾三天没人清运",
        "小区公共卫生很差，草丛里全是烟头",
        "地下车库有很重的异味，像是污水外溢",
        "垃圾房旁边夏天臭得受不了",
        "电梯轿厢地面很脏，好几天没拖过",
        "保洁阿姨只扫门口，楼梯间从来不扫",
        "家里最近出现很多蟑螂，怀疑是管道井里来的",
        "晚上在花坛边看到老鼠跑来跑去",
        "水景池不换水，蚊虫特别多",
    ),
    "security": (
        "停在楼下的电动车电瓶被盗了",
        "最近有陌生人尾随进单元楼",
        "单元门禁卡刷不开，外人却能随便进",
        "车库的监控坏了好几个月没修",
        "消防通道被杂物堵住，存在安全隐患",
        "邻居家的防盗门昨晚被撬，大家很担心",
        "小区围墙有缺口，小偷晚上翻进来",
    ),
    "parking": (
        "我的固定车位经常被别人占位",
        "小区主干道乱停车，救护车都进不来",
        "地库道闸识别不了车牌，每次都要等很久",
        "停车费标准突然上调，没有公示",
        "访客车辆在车库里随意停放，挡住出口",
        "非机动车停车棚满了，电动车没地方放",
    ),
    "noise": (
        "楼上每天凌晨还在拖动家具，噪音很大",
        "广场舞音响开到晚上十点，孩子没法写作业",
        "隔壁装修声从早上七点就开始",
        "空调外机噪声太大，整晚睡不着",
        "楼下商铺半夜搬货，扰民严重",
        "宠物狗一直叫，吵得老人休息不好",
    ),
    "fees": (
        "物业费比去年多收了两百元，没有说明",
        "公摊水电的账单和实际用量对不上",
        "缴费后一个月还没开发票",
        "车位管理费乱收费，标准和合同不一致",
        "提前交的费用申请退费一直没有结果",
        "电梯公摊费用分摊方式不合理",
    ),
    "staff_attitude": (
        "前台客服态度很差，问两句就不耐烦",
        "门岗保安骂人，还推了我一下",
        "打了三次电话报修都被推诿",
        "管家在业主群里不理业主的问题",
        "收费员故意刁难，不让分开缴费",
    ),
    "landscaping": (
        "楼前的大树遮住了整个窗户，需要修剪",
        "中心花园的草坪被踩秃了没人补种",
        "花坛里的植物全都枯死了",
        "绿化带很久没浇水，地都裂开了",
        "小区绿化被改成了停车位",
    ),
    "decoration": (
        "楼上在封阳台，外立面都变了",
        "顶楼业主违章搭建了一个阳光房",
        "装修工人把建筑垃圾堆在消防通道",
        "隔壁拆墙改结构，担心影响承重",
        "一楼住户占用公共绿地扩建院子",
    ),
}
CATEGORY_WEIGHTS = {
    "facility_repair": 30,
    "environment": 15,
    "security": 8,
    "parking": 12,
    "noise": 12,
    "fees": 8,
    "staff_attitude": 5,
    "landscaping": 5,
    "decoration": 5,
}
DETAILS = (
    "已经持续三天了",
    "上周就反映过一次",
    "昨晚十点左右开始",
    "家里有老人和小孩",
    "邻居们也有同样的感受",
    "之前找过管家说会处理",
    "拍了照片可以提供",
    "周末两天一直这样",
    "给生活带来很大不便",
    "希望尽快派人看看",
    "这个月已经第二次了",
    "孩子马上要考试",
    "我白天上班只有晚上在家",
    "群里也有人提过",
    "前台登记过但没有回音",
    "问题反复出现",
    "雨天更加明显",
    "早高峰时最严重",
    "我们是刚搬来的新业主",
    "家里有孕妇需要安静",
)
DEMANDS = (
    "请尽快安排人员处理并回复",
    "要求物业给出书面说明",
    "希望今天之内有人上门",
    "请处理后电话告知结果",
    "要求查明原因避免再次发生",
    "请给出明确的处理时间",
)
MAJOR_TRIGGERS = (
    "如果不处理我会请律师起诉",
    "老人因此摔伤住院了，要求赔偿",
    "已经联系了电视台记者",
)
PLACES = (
    "小区东门",
    "南门岗亭",
    "地下车库B1",
    "地下车库B2",
    "中心花园",
    "儿童游乐区",
    "会所门口",
    "垃圾分类站",
    "西侧围墙",
    "北门快递柜",
    "游泳池",
    "篮球场",
    "消防通道",
    "非机动车棚",
    "健身步道",
    "物业服务中心",
)
CHANNELS = (
    ("phone", 40),
    ("wechat", 22),
    ("app", 15),
    ("walk_in", 10),
    ("call_center", 5),
    ("website", 3),
    ("letter", 3),
    ("email", 2),
)


def tenant_code(t: int) -> str:
    return f"BENCH{t:02d}"


def project_code(p: int) -> str:
    return f"P{p}"


def rooms() -> list[str]:
    return [f"{f}{r:02d}" for f in range(1, FLOORS + 1) for r in range(1, ROOMS_PER_FLOOR + 1)]


def company_document(t: int) -> dict[str, Any]:
    """One property company: projects with buildings and units, departments a default
    routing can reach in every project, and staff to assign to (with a duty leader)."""
    code = tenant_code(t)
    projects = [
        {
            "code": project_code(p),
            "name": f"基准花园{t:02d}-{p}期",
            "city": "上海",
            "time_zone": "Asia/Shanghai",
            "calendar": "cn",
            "buildings": [
                {"code": str(b), "name": f"{b}号楼", "units": rooms()}
                for b in range(1, BUILDINGS + 1)
            ],
        }
        for p in range(1, PROJECTS_PER_TENANT + 1)
    ]
    all_projects = [p["code"] for p in projects]
    departments: list[dict[str, Any]] = [
        {"code": "mgmt", "name": "管理处", "kind": "management"},
        {"code": "quality", "name": "品质部", "kind": "quality"},
        {"code": "finance", "name": "财务部", "kind": "finance"},
    ]
    staff: list[dict[str, Any]] = [
        {"code": "S0", "name": "赵总", "roles": ["tenant_admin"], "department": "mgmt",
         "projects": all_projects},
        {"code": "S1", "name": "钱主任", "roles": ["director"], "department": "mgmt",
         "projects": all_projects},
        {"code": "S2", "name": "孙质检", "roles": ["quality"], "department": "quality",
         "projects": all_projects},
        {"code": "S3", "name": "李会计", "roles": ["handler"], "department": "finance",
         "projects": all_projects},
    ]  # fmt: skip
    kinds = ("customer_service", "engineering", "security", "cleaning", "landscaping", "parking")
    n = 10
    for proj in all_projects:
        for kind in kinds:
            dept = f"{proj.lower()}-{kind}"
            departments.append(
                {"code": dept, "name": f"{proj}{kind}", "kind": kind, "project": proj}
            )
            roles = ["cs_supervisor"] if kind == "customer_service" else ["department_head"]
            staff.append(
                {"code": f"S{n}", "name": f"{proj}{kind}主管", "roles": roles,
                 "department": dept, "projects": [proj]}
            )  # fmt: skip
            for h in range(2):
                roles = ["handler", "duty_leader"] if kind == "security" and h == 0 else ["handler"]
                staff.append(
                    {"code": f"S{n + 1 + h}", "name": f"{proj}{kind}处理人{h}", "roles": roles,
                     "department": dept, "projects": [proj]}
                )  # fmt: skip
            n += 3
    return {
        "tenant": {"code": code, "name": f"基准物业{t:02d}有限公司", "settings": {}},
        "projects": projects,
        "departments": departments,
        "staff": staff,
        "routing": [],
    }


def _weighted(rng: random.Random, pairs: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


_CATEGORY_PAIRS = tuple(CATEGORY_WEIGHTS.items())


@dataclass
class ComplaintWorkload:
    """Builds request `i` of a run (picklable: it is sent to the load process).

    `api_keys[t]` is tenant t's key; the tenant and project are drawn uniformly, so every
    project's advisory lock and reference counter sees a share of the load.
    """

    api_keys: list[str]
    run_tag: str
    seed: int = 1
    path: str = "/v1/complaints"
    _rng: random.Random | None = field(default=None, repr=False)
    _phones: list[str] = field(default_factory=list, repr=False)

    def rng(self, first_index: int) -> random.Random:
        # Seeded by the first request index as well: the warm-up and the measured phase
        # each get a fresh copy of this object, and must not send the same complaints.
        if self._rng is None:
            self._rng = random.Random(f"{self.seed}-{first_index}")
        return self._rng

    def phone(self, rng: random.Random) -> str:
        # About one complainant in twenty calls again (same phone): the duplicate path.
        if self._phones and rng.random() < 0.05:
            return rng.choice(self._phones)
        phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
        self._phones.append(phone)
        if len(self._phones) > 2000:
            del self._phones[:1000]
        return phone

    def body(self, rng: random.Random) -> dict[str, Any]:
        category = _weighted(rng, _CATEGORY_PAIRS)
        content = rng.choice(ISSUES[category])
        details = rng.sample(DETAILS, rng.randint(1, 3))
        name = rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, rng.randint(1, 2)))
        body: dict[str, Any] = {
            "project": project_code(rng.randint(1, PROJECTS_PER_TENANT)),
            "channel": _weighted(rng, CHANNELS),
            "complainant": {"name": name, "phone": self.phone(rng)},
            "receiver": "基准测试",
            "received_at": datetime.now(UTC).isoformat(),
        }
        if rng.random() < 0.7:
            building, room = str(rng.randint(1, BUILDINGS)), rng.choice(rooms())
            body["unit"] = {"building": building, "room": room}
            intro = f"{building}号楼{room}室{name}反映："
        else:
            body["place"] = rng.choice(PLACES)
            intro = f"业主{name}反映{body['place']}："
        text = intro + content + "，" + "，".join(details) + "。"
        if rng.random() < 0.03:
            text += rng.choice(MAJOR_TRIGGERS) + "。"
        body["content"] = text
        body["demand"] = rng.choice(DEMANDS)
        if rng.random() < 0.4:
            body["category"] = category  # the clerk picked it
        return body

    def make(self, i: int) -> tuple[str, str, dict[str, str], bytes]:
        rng = self.rng(i)
        key = rng.choice(self.api_keys)
        headers = {
            "Content-Type": "application/json",
            "X-API-Key": key,
            "Idempotency-Key": f"bench-{self.run_tag}-{i}",
        }
        return "POST", self.path, headers, orjson.dumps(self.body(rng))

    @staticmethod
    def tag(status: int, body: bytes) -> str:
        """How intake filed the complaint (`new`, `duplicate`, `group`), else the status.
        A repeat on an open case is answered 200 with that case: `repeat (200)`."""
        if status == 200:
            return "repeat (200)"
        if status != 201:
            return f"http {status}"
        marker = body.find(b'"kind":"')
        if marker < 0:
            return "created"
        start = marker + 8
        return body[start : body.find(b'"', start)].decode()
