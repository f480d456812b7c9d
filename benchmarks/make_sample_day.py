"""Generate commands/data/sample_day.jsonl: one working day (Asia/Shanghai) of four WeCom customer
groups of a 视频号 operations agency, as raw records in the archive format (RawRecord).

Deterministic (fixed seed). Run: `python benchmarks/make_sample_day.py [OUT]`.
The rosters match config/business.example.yaml.

`--records N` writes a bigger day instead (for benchmarks/bench_replay.py): the day itself, then as many
copies of its message records as it takes to reach N records, each copy in its own groups (and private
chats), shifted by up to ten minutes, all stamped by one gateway (`seq`, with a few numbers never
arriving, so the loss detector has holes to report). Written as a stream, compressed by OUT's suffix
(.zst, .gz; infra/archive_io.py): `python benchmarks/make_sample_day.py /tmp/day-1m.jsonl.zst
--records 1000000`.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

DAY = "2025-03-12"  # a Wednesday
TZ = ZoneInfo("Asia/Shanghai")
OUT = Path(__file__).resolve().parents[1] / "commands" / "data" / "sample_day.jsonl"

MONITOR, NOTIFY, DAY_BOT, NIGHT_BOT = "wt_monitor_01", "wt_notify_01", "wt_day_01", "wt_night_01"
ROBOT_NAMES = {MONITOR: "监控助手", NOTIFY: "通知助手", DAY_BOT: "运营助理小A", NIGHT_BOT: "运营助理小夜"}
GROUPS = {
    "A": ("视频号运营A群", "A群"),
    "B": ("视频号运营B群", "B群"),
    "C": ("视频号带货C群", "C群"),
    "D": ("视频号新号D群", "D群"),
}
STAFF_GROUP = ("售后工作群", "售后群")  # internal group (roomType 3) where the notify robot posts alerts

# Owners (号主)
JIA = "用户甲-138****0000"
WANG = "小王视频号-微信wx8823"
LIJIE = "李姐好物-139****5521"
YI = "用户乙-150****7788"
FENG = "阿峰的小店-微信fengzi01"
CHEN = "陈阿姨-186****3300"
LIU = "老刘视频号-微信liu6688"
XIAO = "晓晓带货-137****9090"
# Team
LI, ZHANG = "售后-小李", "售后-小张"  # after-sales A (09-19) and B (14-23) shifts
ZHOU, QIANG = "运营-老周", "运营主管-阿强"  # third-party operators
MEI, XUE = "群助理-小美", "群助理-小雪"

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

rng = random.Random(20250312)
records: list[tuple[datetime, dict]] = []
_message_ids = iter(range(2020902840222093312, 2020902840222099999, 7))
MONITOR_OFFLINE = ("15:20:05", "15:24:30")


def at(hms: str) -> datetime:
    return datetime.fromisoformat(f"{DAY}T{hms}").replace(tzinfo=TZ)


def stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add(dt: datetime, kind: str, robot_id: str, body: dict) -> None:
    records.append((dt, {"kind": kind, "robot_id": robot_id, "received_at": stamp(dt), "body": body}))


def reply_robot_at(dt: datetime) -> str:
    return DAY_BOT if at("09:00:00") <= dt < at("21:00:00") else NIGHT_BOT


def monitor_online(dt: datetime) -> bool:
    return not (at(MONITOR_OFFLINE[0]) <= dt < at(MONITOR_OFFLINE[1]))


def loose_bool(value: bool) -> bool | str:
    # WorkTool's own example sends atMe as the string "true"/"false"; robots differ.
    return ("true" if value else "false") if rng.random() < 0.3 else value


def msg(
    hms: str,
    group: str | None,
    sender: str,
    text: str = "",
    *,
    mentions: tuple[str, ...] = (),
    text_type: int = 1,
    private_robot: str | None = None,
    reporters: tuple[str, ...] | None = None,
) -> None:
    """One message as every robot that sees it reports it (0.2-2 s apart)."""
    dt = at(hms) + timedelta(milliseconds=rng.randint(0, 900))
    raw = " ".join(f"@{m}" for m in mentions) + (" " if mentions and text else "") + text
    if private_robot:
        name, remark, room_type = "", "", 2
        reporters = (private_robot,)
    elif group == "staff":
        name, remark, room_type = *STAFF_GROUP, 3
        reporters = reporters or (NOTIFY,)
    else:
        name, remark = GROUPS[group]
        room_type = 1
        if reporters is None:
            reply = reply_robot_at(dt)
            mentioned = ROBOT_NAMES[reply] in mentions
            # The reply robot is in every customer group; how many of its reports we keep varies.
            both = mentioned or rng.random() < 0.5
            reporters = (MONITOR, reply) if both else (MONITOR,)
        reporters = tuple(r for r in reporters if r != MONITOR or monitor_online(dt)) or (reply_robot_at(dt),)
    order = list(reporters)
    rng.shuffle(order)
    for i, robot in enumerate(order):
        body = {
            "spoken": text,
            "rawSpoken": raw,
            "receivedName": sender,
            "groupName": name,
            "groupRemark": remark,
            "roomType": str(room_type) if rng.random() < 0.1 else room_type,
            "atMe": loose_bool(ROBOT_NAMES[robot] in mentions),
            "textType": text_type,
        }
        if text_type == 2:
            body["fileBase64"] = PNG_1PX
        add(dt + timedelta(milliseconds=i * rng.randint(200, 2000)), "message", robot, body)


def robot_says(
    hms: str, robot: str, group: str | None, text: str, *, mentions: tuple[str, ...] = (), fail: bool = False
) -> None:
    """A send by one of our robots: the dispatcher's `accepted` record, the echo the monitor robot
    reports when it appears in the group (unless it failed), and WorkTool's result callback."""
    dt = at(hms)
    message_id = str(next(_message_ids))
    if group is None:
        title = mentions[0]
    elif group == "staff":
        title = STAFF_GROUP[1]
    else:
        title = GROUPS[group][1]
    content = " ".join(f"@{m}" for m in mentions) + (" " if mentions else "") + text
    raw_msg = orjson.dumps({"titleList": [title], "receivedContent": content, "type": 203}).decode()
    add(dt, "accepted", robot, {"messageId": message_id, "commandIds": [f"cmd_sample_{message_id[-6:]}"],
                                "errorCode": 0, "errorReason": "", "channel": "wecom",
                                "message": "指令已加入代发队列中！", "type": 203, "rawMsg": raw_msg})  # fmt: skip
    sent = dt + timedelta(seconds=rng.uniform(6, 40))
    if not fail and group is not None:
        echo_reporters = (NOTIFY,) if group == "staff" else (MONITOR,)
        msg(
            sent.strftime("%H:%M:%S"),
            group,
            ROBOT_NAMES[robot],
            text,
            mentions=mentions,
            reporters=echo_reporters,
        )
    result = {
        "messageId": message_id,
        "errorCode": 201102 if fail else 0,
        "errorReason": "发送消息失败" if fail else "",
        "runTime": int(sent.timestamp() * 1000),
        "timeCost": round(rng.uniform(1.5, 6.0), 1),
        "type": 203,
        "rawMsg": raw_msg,
    }
    if fail:
        result |= {"successList": [], "failList": [title]}
    add(sent + timedelta(seconds=rng.uniform(0.5, 3)), "result", robot, result)


def status(hms: str, robot: str, online: bool) -> None:
    dt = at(hms)
    add(
        dt,
        "online" if online else "offline",
        robot,
        {"status": 5 if online else 6, "timestamp": int(dt.timestamp() * 1000)},
    )


# --- the day -----------------------------------------------------------------------------------

status("08:41:10", DAY_BOT, True)
status("08:30:02", NOTIFY, True)

# A群: scan verification, a private operation and a harsh operator, settlement questions
msg("08:52:11", "A", MEI, "各位老板早上好☀️ 今天的直播排期已经发在群公告，请大家留意")
msg("09:05:03", "A", JIA, "我的视频号发不了作品，需要扫码认证吗", mentions=(ROBOT_NAMES[DAY_BOT],))
robot_says("09:05:20", DAY_BOT, "A", "您好，需要扫码认证的，售后同事马上联系您，请稍等哦", mentions=(JIA,))
status("09:06:40", NIGHT_BOT, False)
msg("09:12:30", "A", LI, "您好，请在今天中午前完成扫码认证，二维码我私发给您", mentions=(JIA,))
msg("09:13:02", "A", JIA, "在的")
msg("09:14:45", "A", JIA, text_type=2)
msg("09:15:10", "A", JIA, "扫完了，是这个页面吗")
msg("09:20:33", "A", LI, "收到截图了，认证已通过👍")
msg("09:21:05", "A", JIA, "好的谢谢")
msg("10:02:17", "A", ZHOU, "今天下午三点前把橱窗商品上架，记得拍一条开箱视频", mentions=(WANG,))
msg("10:30:40", "A", WANG, "好的我现在拍")
msg("10:58:02", "A", WANG, "拍好了，发群里了")
msg("10:58:30", "A", WANG, text_type=2)
msg("11:15:12", "A", WANG, "我把橱窗里的商品删了，感觉那几个卖不动")
msg("11:16:05", "A", ZHOU, "谁让你删的？马上给我配合扫码！！！别废话")
robot_says("11:16:40", NOTIFY, "staff", "【警告】A群 运营-老周 语气过激，请关注；小王视频号 私自删除橱窗商品")
msg("11:18:20", "A", LI, "[暂停回复]")
msg("11:20:01", "A", LI, "王哥别急，商品我这边帮您恢复，以后下架前先在群里说一声", mentions=(WANG,))
msg("11:25:44", "A", WANG, "行吧")
msg("12:03:15", "A", JIA, "中午好，大家吃饭了吗")
msg("13:40:09", "A", JIA, "佣金什么时候结算？能日结吗")
msg("13:52:30", "A", LI, "佣金是销售额扣除退款后的2%，7天结算一次，暂时不能日结", mentions=(JIA,))
msg("14:10:27", "A", JIA, text_type=3)
msg("14:30:00", "A", LI, "[恢复回复]")
msg("16:45:18", "A", WANG, "今天出了3单，不错😄")
msg("16:46:02", "A", JIA, "厉害厉害")
msg("17:10:00", "A", MEI, "提醒：今晚8点前请大家把今天的视频发布出去")
msg("19:30:51", "A", JIA, "视频发出去了，帮我看看有没有问题", mentions=(ROBOT_NAMES[DAY_BOT],))
robot_says("19:31:10", DAY_BOT, "A", "收到，视频已经看到了，封面和标题都没问题👍", mentions=(JIA,))
msg("21:32:40", "A", JIA, "晚上还有人在吗")
robot_says("21:33:05", NIGHT_BOT, "A", "在的，有什么可以帮您？", mentions=(JIA,))
msg("21:35:12", "A", JIA, "明天的直播几点开始")
robot_says("21:35:40", NIGHT_BOT, "A", "明天上午十点开始，记得提前半小时准备哦", mentions=(JIA,))

# B群: complaints, refusal, presenter verification, appeal selfie video
msg("09:30:12", "B", LIJIE, "为什么这两天视频号没有更新视频")
msg("09:31:03", "B", LIJIE, "说好的每天都会发的")
msg("10:15:30", "B", YI, "我要投诉你们，说好的一天300到500呢，这都一个礼拜了才几十块")
msg("10:16:02", "B", YI, "再这样我就去平台举报了！")
robot_says(
    "10:16:20", NOTIFY, "staff", "【紧急】B群 用户乙-150****7788 投诉：说好的一天300到500，请立即处理！"
)
msg("10:18:15", "staff", LI, "收到，B群我来跟进")
msg("10:20:48", "B", LIJIE, "我也是，感觉被骗了")
msg("10:22:10", "B", YI, "就是啊，一开始说得那么好")
msg(
    "10:40:05", "B", QIANG, "收益是按实际销售算的，前期起号需要时间，你先配合把出镜人验证做了", mentions=(YI,)
)
msg("11:00:31", "B", XUE, "麻烦您今天完成出镜人身份验证，链接稍后私发", mentions=(YI,))
msg("12:30:22", "B", YI, "现在没时间，不想弄了")
msg(
    "14:05:09",
    "B",
    ZHANG,
    "您好，我是售后小张，出镜人验证只需要3分钟，您方便的时候回复我一下",
    mentions=(YI,),
)
msg("14:06:40", "B", ZHANG, "李姐，今天的视频已经排上了，下午五点发布", mentions=(LIJIE,))
msg("14:20:02", "B", LIJIE, "好的谢谢")
msg("15:22:18", "B", YI, "需要拍申诉自拍视频吗？账号被限流了")
robot_says("15:23:00", DAY_BOT, "B", "需要的，售后同事稍后发您拍摄模板", mentions=(YI,))
msg("15:30:27", "B", ZHANG, "需要的，按照我发的模板拍一段10秒的自拍视频，正脸、光线充足", mentions=(YI,))
msg("15:31:10", "B", YI, "好的我现在拍")
msg("15:44:50", "B", YI, "视频拍好了")
msg("15:45:05", "B", YI, text_type=5)
msg("16:58:41", "B", LIJIE, "视频发出来了，看到了")
msg("18:50:13", "B", QIANG, "今天B群的数据太差了，听不懂吗？必须按模板拍！！")
robot_says("18:50:50", NOTIFY, "staff", "【警告】B群 运营主管-阿强 语气过激，请关注")
msg("20:10:36", "B", LIJIE, "橱窗的商品怎么添加？", mentions=(ROBOT_NAMES[DAY_BOT],))
robot_says(
    "20:11:00",
    DAY_BOT,
    "B",
    "在视频号助手里点「橱窗管理」-「添加商品」就可以了，有问题随时找售后哦",
    mentions=(LIJIE,),
)
msg("22:10:20", "B", YI, "申诉通过了，谢谢小张")
msg("22:15:03", "B", ZHANG, "[已解决]")
msg("22:16:11", "B", ZHANG, "不客气，有问题随时找我", mentions=(YI,))

# C群: phone binding, real-name failure left waiting, settlement, a failed robot send
msg("09:40:26", "C", CHEN, "手机号换了，视频号要重新绑定手机吗", mentions=(ROBOT_NAMES[DAY_BOT],))
robot_says("09:41:00", DAY_BOT, "C", "阿姨您好，换手机号需要重新绑定，售后同事会联系您", mentions=(CHEN,))
msg("09:50:44", "C", LI, "阿姨您好，需要重新绑定手机，我一会儿打电话教您", mentions=(CHEN,))
msg("09:52:10", "C", CHEN, "好的好的，谢谢")
msg("10:05:33", "C", FENG, "大家早，今天天气不错")
msg("10:06:02", "C", LIU, "早啊峰哥")
msg("10:06:40", "C", FENG, "早🌞")
msg("11:30:15", "C", LIU, "实名认证一直提示失败怎么办")
msg("12:10:07", "C", LIU, "有人吗？？")
msg("12:25:30", "C", LI, "刘哥不好意思刚在忙，实名失败一般是身份证照片反光，重新拍一张试试", mentions=(LIU,))
msg("12:40:12", "C", LIU, text_type=2)
msg("12:42:01", "C", LIU, "这样可以吗")
msg("13:00:45", "C", LI, "可以了，已经提交")
msg("13:01:20", "C", LIU, "👍")
msg("16:00:08", "C", FENG, "这个月的结算单什么时候出？", mentions=(ROBOT_NAMES[DAY_BOT],))
robot_says("16:00:30", DAY_BOT, "C", "结算单每周一出，按7天周期结算", mentions=(FENG,), fail=True)
msg("16:12:55", "C", FENG, "？没人回吗")
msg("16:15:20", "C", LI, "峰哥，结算单每周一出，按7天周期结算", mentions=(FENG,))
msg("17:30:31", "C", CHEN, text_type=3)
msg("17:31:02", "C", CHEN, "语音听得到吗")
msg("19:05:17", "C", ZHOU, "明天上午十点直播，提前半小时到", mentions=(FENG,))
msg("19:06:01", "C", FENG, "收到")
msg("23:05:40", "C", CHEN, "晚上好，我想问下明天几点直播", mentions=(ROBOT_NAMES[NIGHT_BOT],))
robot_says("23:06:00", NIGHT_BOT, "C", "阿姨晚上好，明天上午十点直播哦", mentions=(CHEN,))

# D群: onboarding a new owner, who publishes a video on her own
msg("14:15:02", "D", XUE, "欢迎新朋友加入，新号第一周请按照群公告完成扫码认证和实名", mentions=(XIAO,))
msg("14:20:33", "D", XIAO, "好的，请问扫码在哪里扫")
robot_says("14:21:00", DAY_BOT, "D", "售后同事马上把二维码发给您，请用注册视频号的微信扫码", mentions=(XIAO,))
add(at("14:38:12"), "qrcode", DAY_BOT, {"messageId": str(next(_message_ids)), "errorCode": 0, "errorReason": "",
                                         "type": 206, "groupName": GROUPS["D"][0],
                                         "qrCode": "https://wework.qpic.cn/wwpic/qr_d_group.png"})  # fmt: skip
msg("14:40:18", "D", ZHANG, "二维码已私发，请用注册视频号的微信扫码", mentions=(XIAO,))
msg("14:48:40", "D", XIAO, "扫好了")
msg("14:49:02", "D", XIAO, text_type=2)
msg("16:30:25", "D", XIAO, "我刚自己发了一条视频，没问题吧")
msg("16:35:10", "D", ZHANG, "新号期间先别自己发视频哦，会影响起号，请先删除", mentions=(XIAO,))
msg("16:40:03", "D", XIAO, "啊，好的，已经删了")
msg("20:30:55", "D", XIAO, "今天辛苦了🙏")
msg("20:31:20", "D", XUE, "不辛苦，明天继续加油💪")

# Private chats (roomType 2): only the robot in the chat reports them
msg("10:50:12", None, YI, "你好，我想退出合作", private_robot=DAY_BOT)
robot_says("10:50:40", DAY_BOT, None, "您好，已收到您的诉求，售后同事会尽快联系您", mentions=(YI,))
msg("13:05:37", None, CHEN, "小A，绑定手机的验证码发不过来", private_robot=DAY_BOT)
msg("22:40:08", None, WANG, "晚上能帮我看看账号为什么被限流吗", private_robot=NIGHT_BOT)
robot_says(
    "22:40:30", NIGHT_BOT, None, "您好，限流一般和近期发布的内容有关，明早售后同事帮您排查", mentions=(WANG,)
)

# Robot status: the monitor phone drops for four minutes; the shifts change at 21:00
status(MONITOR_OFFLINE[0], MONITOR, False)
robot_says("15:21:00", NOTIFY, "staff", "【严重】机器人 监控助手 离线，请检查手机")
msg("15:23:40", "staff", ZHANG, "已经在重启手机了")
status(MONITOR_OFFLINE[1], MONITOR, True)
status("20:55:30", NIGHT_BOT, True)
status("21:05:12", DAY_BOT, False)


GATEWAY = "gw-bench-day"


def _copy(c: int, day: list[tuple[datetime, dict]]) -> Iterator[tuple[datetime, int, dict]]:
    """Copy `c` of the day's messages, in groups and private chats of its own."""
    shift = timedelta(seconds=random.Random(c).randint(-600, 600))
    for i, (dt, rec) in enumerate(day):
        body = dict(rec["body"])
        if body.get("groupName"):
            body["groupName"] = f"{body['groupName']}#{c}"
            body["groupRemark"] = f"{body['groupRemark']}#{c}" if body.get("groupRemark") else ""
        else:
            body["receivedName"] = f"{body['receivedName']}#{c}"
        t = dt + shift
        yield t, c * 1000 + i, {**rec, "received_at": stamp(t), "body": body}


def big_day(n: int, missing_every: int | None = None) -> Iterator[dict]:
    """`n` records of the day and its copies in event-time order, stamped by one gateway; one stamped
    number in `missing_every` (default: a quarter of `n`) never arrives (a hole for operators/gaps.py)."""
    missing_every = missing_every or max(1000, n // 4)
    base = sorted(records, key=lambda x: x[0])
    messages = [(dt, r) for dt, r in base if r["kind"] == "message"]
    copies = max(0, -(-(n - len(base)) // len(messages)))
    streams = [((dt, i, r) for i, (dt, r) in enumerate(base))]
    streams += [_copy(c, messages) for c in range(1, copies + 1)]
    seq = 0
    for k, (_, _, rec) in enumerate(heapq.merge(*streams, key=lambda x: (x[0], x[1]))):
        if k >= n:
            return
        seq += 2 if seq and seq % missing_every == 0 else 1
        yield {**rec, "seq": {"gw": GATEWAY, "n": seq}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=OUT)
    ap.add_argument("--records", type=int, help="a bigger day of this many records (see above)")
    args = ap.parse_args()
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.records:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from infra.archive_io import open_writer

        with open_writer(out) as f:
            count = 0
            for rec in big_day(args.records):
                f.write(orjson.dumps(rec) + b"\n")
                count += 1
        print(f"{count} records -> {out} ({out.stat().st_size / 1e6:.1f} MB)")
        return
    lines = [orjson.dumps(r).decode() for _, r in sorted(records, key=lambda x: x[0])]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} records -> {out}")


if __name__ == "__main__":
    main()
