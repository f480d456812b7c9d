"""Message type rules (docs/rules.md §2): every code, the docs/platform.md §3 examples, negation and
context, staff commands, non-text messages, need_reply, and the labelled-set accuracy targets."""

import pytest

from classifiers.labelled import evaluate, labelled_message, load_labelled
from operators.classify import RuleClassifier
from operators.rules import ResponseDetector, TermMatcher
from operators.type_model import LABELS
from tests.support import DATA
from worktool.config import BusinessConfig, ClassifierConfig, load_config
from worktool.models import Classification

ROSTER = load_config(DATA / "labelled_roster.yaml")
CLASSIFIER = RuleClassifier(ROSTER)

USER, STAFF, OPERATOR, ASSISTANT, ROBOT = "张姐-美食号", "售后小王", "王老板", "群助理小美", "运营助理小A"


def classify(
    text: str,
    sender: str = USER,
    *,
    room: int = 1,
    text_type: int = 1,
    at_me: bool = False,
    raw_text: str | None = None,
    classifier: RuleClassifier = CLASSIFIER,
) -> Classification:
    row = {
        "text": text,
        "raw_text": raw_text,
        "sender_name": sender,
        "room_type": room,
        "text_type": text_type,
        "at_me": at_me,
    }
    if at_me and raw_text is None:
        row["raw_text"] = f"@{ROBOT}\u2005{text}"
    return classifier.classify_batch([labelled_message(row)])[0]


def kind(text: str, sender: str = USER, **kw) -> str | None:
    return classify(text, sender, **kw).message_type


# --- docs/platform.md §3 examples -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sender", "expected"),
    [
        ("我的视频号发不了作品，需要扫码认证吗", USER, "chat_after_sales"),
        ("在的", USER, "chat_cooperation"),
        ("现在没时间，不想弄了", USER, "chat_cooperation"),  # a refusal: an answer to a request
        ("我要投诉你们，说好的一天300到500呢", USER, "chat_complaint"),
        ("佣金什么时候结算？能日结吗", USER, "chat_daily"),
        ("为什么这两天视频号没有更新视频", USER, "chat_complaint"),
        ("我把橱窗里的商品删了", USER, "chat_private_operation"),
        ("请完成出镜人身份验证", USER, "chat_after_sales"),
        ("马上给我配合扫码！！！别废话", OPERATOR, "operator_tone_hard"),
        ("[暂停回复]", STAFF, "staff_other"),
    ],
)
def test_platform_examples(text, sender, expected):
    c = classify(text, sender)
    assert c.message_type == expected, c.reason
    assert c.decided_by == "rules" and 0.0 <= c.confidence <= 1.0 and c.reason


def test_refusal_and_response_words_of_the_examples():
    detector = ResponseDetector(ROSTER.classifier)
    assert detector.status("在的") == "responded"
    assert detector.status("现在没时间，不想弄了") == "refused"
    assert "refused" in classify("现在没时间，不想弄了").reason
    assert classify("[暂停回复]", STAFF).staff_command == "pause_replies"


# --- every code -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sender", "expected"),
    [
        ("人脸识别老是失败", USER, "chat_after_sales"),
        ("你们这服务也太敷衍了吧", USER, "chat_complaint"),
        ("我自己发了一个视频", USER, "chat_private_operation"),
        ("视频已经发了", USER, "chat_cooperation"),
        ("姐妹们，这个真的能赚钱吗", USER, "chat_complain_discuss"),
        ("大家早上好", USER, "chat_daily"),
        ("[捂脸]", USER, "chat_other"),
        ("请问是哪个号出问题了？", STAFF, "staff_ask_user"),
        ("佣金是7天结算一次，每周二到账", STAFF, "staff_reply_user"),
        ("我先去吃个饭，有事找丽丽", STAFF, "staff_other"),
        ("必须今天完成，没有商量", OPERATOR, "operator_tone_hard"),
        ("张姐明天拍两条探店视频", OPERATOR, "operator_assign_user"),
        ("大家辛苦了", OPERATOR, "operator_other"),
    ],
)
def test_each_code(text, sender, expected):
    c = classify(text, sender)
    assert c.message_type == expected, c.reason


def test_staff_at_user_uses_the_mentions():
    c = classify("@李哥穿搭 在吗？需要您配合拍一个自拍视频", STAFF)
    assert c.message_type == "staff_at_user" and "@李哥穿搭" in c.reason
    # the same words @-ing a colleague or a robot are not an owner task
    assert kind("@售后丽丽 这个用户你跟一下", STAFF) == "staff_other"
    assert kind("@运营助理小A 暂停一下", STAFF) == "staff_other"
    # an @ carrying an answer is a reply
    assert kind("@赵先生 佣金是7天结算的，您放心", STAFF) == "staff_reply_user"


def test_a_bare_staff_mention_of_an_owner_is_a_reminder():
    assert kind("@张姐-美食号", STAFF) == "staff_at_user"
    assert kind("@售后丽丽", STAFF) == "staff_other"


def test_assistants_get_the_staff_codes():
    c = classify("@老周钓鱼 您好，需要您扫码确认下身份", ASSISTANT)
    assert (c.sender_type, c.message_type) == ("assistant", "staff_at_user")
    assert kind("大家今天的视频都发了吗？", ASSISTANT) == "staff_ask_user"


def test_staff_in_an_internal_room_address_no_owner():
    c = classify("今天的售后单都处理完了吗", "陈经理", room=3)
    assert (c.sender_type, c.message_type) == ("staff", "staff_other")


def test_robot_messages_get_no_type():
    c = classify("您好，售后人员马上就来处理", ROBOT)
    assert (c.sender_type, c.message_type, c.sentiment, c.need_reply) == ("robot", None, None, False)


# --- negation and context ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我把商品删了", "chat_private_operation"),
        ("商品可以删吗", "chat_daily"),  # asking about an operation
        ("我可以自己发视频吗？", "chat_daily"),
        ("如果我删了视频会有影响吗", "chat_daily"),  # supposing one
        ("我没有删商品，只是看了一下", "chat_daily"),  # denying one
        ("不小心把一个视频删掉了", "chat_private_operation"),  # 不小心 negates nothing
    ],
)
def test_private_operation_versus_a_question_about_one(text, expected):
    c = classify(text)
    assert c.message_type == expected, c.reason


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("现在不行", "refused"),
        ("现在可以", "responded"),
        ("不可以", "refused"),
        ("可以吗", None),
        ("好的，不配合", "refused"),
        ("在吗", None),
        ("在不在？", None),
        ("来了来了", "responded"),
    ],
)
def test_refusal_versus_confirmation(text, status):
    assert ResponseDetector(ROSTER.classifier).status(text) == status
    if status is not None:
        c = classify(text)
        assert c.message_type == "chat_cooperation" and status in c.reason


def test_refusal_and_confirmation_differ_in_sentiment():
    assert classify("现在不行").sentiment < 0 < classify("好的").sentiment


def test_negated_complaint_word():
    assert kind("不是投诉哈，就是问问结算进度") == "chat_daily"
    # still a complaint when the rest of the message is one
    assert kind("我不想投诉，但是你们真的要给个解释") == "chat_complaint"


def test_grumbling_among_owners_versus_a_complaint_to_us():
    assert kind("你们有没有觉得这个不靠谱") == "chat_complain_discuss"
    assert kind("我要投诉你们") == "chat_complaint"
    assert kind("说实话我有点怀疑") == "chat_complain_discuss"
    # the same doubt addressed to us (@ our robot) is a complaint
    assert kind("这个真的靠谱吗，我有点怀疑", at_me=True) == "chat_complaint"
    # a strong word is a complaint even among owners
    assert kind("大家一起去12315举报他们") == "chat_complaint"
    # owners asking each other
    assert kind("大家都结算了吗？我还没收到钱") == "chat_complain_discuss"


def test_operator_tone():
    assert kind("说了多少遍了！！！", OPERATOR) == "operator_tone_hard"  # more than two !
    assert kind("今天数据不错!!", OPERATOR) == "operator_other"  # two ! are not
    assert kind("你是猪吗，这点事都做不好", OPERATOR) == "operator_tone_hard"  # insult
    assert kind("麻烦您马上扫一下码，谢谢", OPERATOR) == "operator_assign_user"  # polite urgency
    assert kind("我马上安排人处理", OPERATOR) == "operator_other"  # the operator's own action
    assert kind("不是必须今天，明天也行", OPERATOR) == "operator_other"  # negated
    assert kind("@张姐-美食号 马上扫码", OPERATOR) == "operator_tone_hard"  # harsh beats assign
    c = classify("@李哥穿搭 今天下午拍一条开箱视频", OPERATOR)
    assert c.message_type == "operator_assign_user" and "@李哥穿搭" in c.reason


def test_short_replies_emoji_typos_and_english():
    for ack in ("在", "好的", "嗯", "收到", "ok", "OK的", "好滴"):
        assert kind(ack) == "chat_cooperation", ack
    assert kind("👍👍👍") == "chat_other"
    assert kind("。。。") == "chat_other"
    assert kind("二唯码扫了没反应") == "chat_after_sales"  # typo
    assert kind("the QR code扫不了，一直loading") == "chat_after_sales"
    assert kind("thanks~") == "chat_daily"


# --- staff commands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("[暂停回复]", "pause_replies"),
        ("[恢复回复]", "resume_replies"),
        ("[已解决]", "solved"),
        ("[转人工] 这个我来处理", "handover"),
        ("［已解决］", "solved"),
    ],
)
def test_staff_commands(text, command):
    c = classify(text, STAFF)
    assert c.staff_command == command and c.message_type == "staff_other"


def test_command_with_more_text_is_typed_by_the_rest():
    c = classify("[已解决] @张姐-美食号 已经帮您处理好了", STAFF)
    assert (c.staff_command, c.message_type) == ("solved", "staff_reply_user")
    assert classify("[暂停回复]", ASSISTANT).staff_command == "pause_replies"


def test_users_cannot_issue_commands():
    assert classify("[暂停回复]").staff_command is None


# --- non-text messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("text_type", [0, 2, 3, 5, 7, 8, 9, 13, 15, 42])
@pytest.mark.parametrize("sender", [USER, STAFF, OPERATOR, ASSISTANT, ROBOT])
def test_non_text_never_crashes(text_type, sender):
    c = classify("", sender, text_type=text_type)
    assert c.confidence >= 0.0 and c.reason


def test_non_text_types_by_kind_and_sender():
    c = classify("", text_type=2)
    assert (c.message_type, c.need_reply, c.sentiment) == ("chat_other", False, 0.0)
    assert "image" in c.reason
    assert kind("", text_type=5) == "chat_cooperation"  # the requested selfie/work video
    assert "voice" in classify("", text_type=3).reason
    assert kind("", STAFF, text_type=2) == "staff_other"
    assert kind("", OPERATOR, text_type=9) == "operator_other"
    assert (
        kind("震惊！视频号新规出炉", text_type=8) == "chat_other"
    )  # a link's title is not the owner's words
    assert kind("这个码扫不了", text_type=15) == "chat_after_sales"  # a quoted reply is read as text


# --- structure over phrases: who is addressed, the speech act, intensity ------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # not for us at all: ads, chain messages, shared links, tests, the wrong group
        ("不好意思，刚才那条发错了", "chat_other"),
        ("走错群了哈哈", "chat_other"),
        ("test", "chat_other"),
        ("测试一下", "chat_other"),
        ("低价转让一台九成新的平板，有意私聊", "chat_other"),
        ("618大促，全场五折，需要的加我", "chat_other"),
        ("谁有空帮我点个赞", "chat_other"),
        ("https://mp.weixin.qq.com/s/abc 这篇文章写得好", "chat_other"),
        # owners speaking with each other: solidarity, warnings, questions to the others
        ("我也一样，等了一周了", "chat_complain_discuss"),
        ("别急，我的号也是过了好几天才有流量", "chat_complain_discuss"),
        ("家人们，你们的号都出单了吗", "chat_complain_discuss"),  # "你们" after a vocative: the owners
        ("我跟你们讲，别信他们那一套", "chat_complain_discuss"),
        ("同问，我也还没收到", "chat_complain_discuss"),  # "没收到" reports, it refuses nothing
        ("你们有谁结算过了吗", "chat_complain_discuss"),
        ("唉，早知道就不做了", "chat_complain_discuss"),  # regret, not a refusal
        ("姐妹，你那个号现在一天能出几单", "chat_complain_discuss"),
        ("有没有人跟我一样，号一直没流量", "chat_complain_discuss"),
        ("一直没人回我，到底有没有人管", "chat_complaint"),  # asking for our people: to us
        ("大家晚上好", "chat_daily"),  # a greeting to everyone is small talk
        ("大家周末愉快", "chat_daily"),
        # complaints: accusation, anger, money wrongly counted, promises broken, our people's doing
        ("说好的三天到账，这都一周了？？", "chat_complaint"),
        ("凭什么扣我佣金", "chat_complaint"),
        ("你们这什么破平台，钱也不给，人也找不到", "chat_complaint"),
        ("怎么又扣了我20块，谁扣的？", "chat_complaint"),
        ("这个月才给我结了5块钱，开什么玩笑", "chat_complaint"),
        ("佣金到底什么时候给？拖了半个月了！！", "chat_complaint"),
        ("不是说不收费吗，怎么又要交钱", "chat_complaint"),
        ("客服把我的视频都删了，谁让你们删的", "chat_complaint"),
        ("我的号被你们搞成这样，怎么赔", "chat_complaint"),
        ("我要退出，把押金退给我", "chat_complaint"),
        # a refusal in anger is a complaint, a plain one an answer to the request
        ("算了不弄了，一天到晚折腾人，气死我了", "chat_complaint"),
        ("你们又让我重新认证，烦死了", "chat_complaint"),
        ("今天不方便，改天吧", "chat_cooperation"),
        # a refund as a noun, a commission question: ordinary questions
        ("退货的订单佣金怎么算", "chat_daily"),
        ("买家退款了佣金会扣吗", "chat_daily"),
        ("佣金比例是多少", "chat_daily"),
        # an act reported, then asked about, is still the act; one only considered is a question
        ("我刚把头像换了，会影响吗？", "chat_private_operation"),
        ("昨天我自己发了条视频，可以吧", "chat_private_operation"),
        ("我把简介改了一下，没问题吧", "chat_private_operation"),
        ("我可以删掉那个视频吗", "chat_daily"),
        ("我想把昵称改一下", "chat_daily"),  # an intention, nothing done yet
        # confirmations with a time: answers to a request
        ("晚上8点可以", "chat_cooperation"),
        ("明天可以，今天没空", "chat_cooperation"),
        ("等下可以，码发我", "chat_cooperation"),
        ("绑定好了，你们看下", "chat_cooperation"),
        ("今天可以结算吗", "chat_daily"),  # "可以" inside a question answers nothing
        ("好的谢谢", "chat_daily"),  # thanks close an answer
        ("扫了还是提示失败", "chat_after_sales"),
    ],
)
def test_user_structure(text, expected):
    c = classify(text)
    assert c.message_type == expected, c.reason


@pytest.mark.parametrize(
    ("text", "sender", "expected"),
    [
        # an @ of an owner: the speech act decides
        ("@李哥穿搭 您的身份证是本人的吗？", STAFF, "staff_ask_user"),
        ("@李哥穿搭 您那边现在还能登录吗？", STAFF, "staff_ask_user"),
        ("@李哥穿搭 请今天把码扫一下", STAFF, "staff_at_user"),
        ("@李哥穿搭 方便现在扫个码吗", STAFF, "staff_at_user"),  # a request put as a question
        ("@李哥穿搭 不用担心，是正常的", STAFF, "staff_reply_user"),
        ("@李哥穿搭 这个是系统延迟，明天就到账了", STAFF, "staff_reply_user"),
        ("@李哥穿搭 您今天有空拍一下自拍视频吗", STAFF, "staff_at_user"),
        ("我去开个会，有事@我", STAFF, "staff_other"),  # "@我" is the writer
        ("一般两三天就恢复了，放心", ASSISTANT, "staff_reply_user"),
        ("有问题直接在群里说就好", ASSISTANT, "staff_reply_user"),
        # operators: harsh by structure (ultimatum, contempt, rhetorical challenge), not only by word
        ("你到底还做不做？", OPERATOR, "operator_tone_hard"),
        ("不想干就别干了，别耽误大家", OPERATOR, "operator_tone_hard"),
        ("这么点事都做不好", OPERATOR, "operator_tone_hard"),
        ("连个视频都拍不好，还做什么号", OPERATOR, "operator_tone_hard"),
        ("都说了三遍了还不弄！", OPERATOR, "operator_tone_hard"),
        ("你自己看看你拍的什么东西", OPERATOR, "operator_tone_hard"),
        ("最后一次提醒，明天不交就清退", OPERATOR, "operator_tone_hard"),
        # "马上" meaning "soon" is no urgency
        ("马上就好，大家再等等", OPERATOR, "operator_other"),
        ("系统马上恢复，稍等", OPERATOR, "operator_other"),
        # a task needs an action for owners; an @, a role word or a reassurance is not one
        ("各位号主明天上午10点之前把视频发群里", OPERATOR, "operator_assign_user"),
        ("@李哥穿搭 这周五晚上8点开播，你准备一下", OPERATOR, "operator_assign_user"),
        ("@李哥穿搭 明早9点前把商品上架好", OPERATOR, "operator_assign_user"),
        ("把橱窗里那个商品下架一下", OPERATOR, "operator_assign_user"),
        ("@李哥穿搭 没关系，这个是平台的问题", OPERATOR, "operator_other"),
        ("@李哥穿搭 放心，这个不影响你的号", OPERATOR, "operator_other"),
        ("我是新来的运营小李，以后多多关照", OPERATOR, "operator_other"),
        ("你们售后跟进一下B群的认证", OPERATOR, "operator_other"),  # to our staff, not to owners
        ("小王你跟一下李哥的认证", OPERATOR, "operator_other"),
    ],
)
def test_colleague_structure(text, sender, expected):
    c = classify(text, sender)
    assert c.message_type == expected, c.reason


def test_new_structure_lists_are_configurable():
    config = BusinessConfig.model_validate(
        {
            "staff": [STAFF],
            "operators": [OPERATOR],
            "classifier": {
                "operator": {"calm": []},  # "马上就好" urgent again
                "staff": {"self_mentions": []},
                "peer_vocatives": [],  # "家人们，你们…" speaks to us again
                "responses": {"refusal_negators": ["不", "没"]},
            },
        }
    )
    rules = RuleClassifier(config)
    assert kind("马上就好", OPERATOR, classifier=rules) == "operator_tone_hard"
    assert kind("家人们，你们什么时候结算", classifier=rules) != "chat_complain_discuss"
    assert kind("我也是没收到", classifier=rules) == "chat_cooperation"
    assert kind("我先下线了，有事@我", STAFF, classifier=rules) == "staff_at_user"


# --- need_reply (docs/rules.md §5) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "at_me", "expected"),
    [
        ("佣金什么时候结算？", False, True),  # a question to us
        ("你好", True, True),  # @ our robot
        ("你好", False, False),
        ("好的", False, False),  # an acknowledgement
        ("现在没时间，不想弄了", False, False),
        ("人脸识别老是失败", False, True),  # a problem report asks for help
        ("我要投诉你们", False, True),
        ("大家都结算了吗？", False, False),  # owners among themselves
        ("哈哈哈哈", False, False),
        ("自拍视频拍好了，发给谁？", False, True),
    ],
)
def test_need_reply(text, at_me, expected):
    assert classify(text, at_me=at_me).need_reply is expected


def test_colleagues_never_need_a_reply():
    assert classify("佣金什么时候结算？", STAFF).need_reply is False
    assert classify("佣金什么时候结算？", OPERATOR).need_reply is False


# --- configuration drives the rules -------------------------------------------------------------------


def test_configured_words_change_the_type():
    config = BusinessConfig.model_validate(
        {"classifier": {"user": {"chat_complaint": {"keywords": {"退群": 3.0}}}}}
    )
    assert kind("我要退群") != "chat_complaint"
    assert kind("我要退群", classifier=RuleClassifier(config)) == "chat_complaint"
    off = BusinessConfig.model_validate(
        {"classifier": {"user": {"chat_complaint": {"keywords": {"投诉": 0}}}}}
    )
    assert kind("投诉", classifier=RuleClassifier(off)) != "chat_complaint"


def test_configured_commands_and_exclamation_limit():
    config = BusinessConfig.model_validate(
        {
            "staff": [STAFF],
            "operators": [OPERATOR],
            "classifier": {"staff_commands": {"[统计]": "stats"}, "operator": {"exclamation_limit": 4}},
        }
    )
    rules = RuleClassifier(config)
    assert classify("[统计]", STAFF, classifier=rules).staff_command == "stats"
    assert kind("今天发视频！！！", OPERATOR, classifier=rules) != "operator_tone_hard"


def test_term_matcher_longest_term_hides_nested_ones_within_a_group():
    m = TermMatcher({"a": {"说好的": 1.0}, "b": {"好的": 1.0}, "s": {"好的": 1.0}}, groups={"s": "other"})
    hits = m.scan("说好的呢")
    assert {(h.label, h.term) for h in hits} == {("a", "说好的"), ("s", "好的")}


def test_classifier_config_defaults_match_business_defaults():
    assert BusinessConfig().classifier == ClassifierConfig()


# --- labelled set -----------------------------------------------------------------------------------


def test_labelled_set_meets_the_targets():
    rows = load_labelled(DATA / "labelled_messages.jsonl")
    assert len(rows) >= 300
    assert {r["expected_message_type"] for r in rows} >= {*LABELS, None}  # every type, and robots
    ev = evaluate(rows, CLASSIFIER)
    assert ev.overall.type_accuracy >= 0.95, ev.errors
    assert ev.overall.sender_accuracy >= 0.99, ev.errors
    # the held-out tail was never tuned against: it only guards against overfitting
    heldout = ev.by_split["heldout"]
    assert heldout.n >= 0.18 * len(rows) and heldout.type_accuracy >= 0.9


@pytest.mark.parametrize(
    "name,type_floor",
    [
        # written blind by another person, then used to find error categories (rules tuned on it)
        ("blind", 0.95),
        # written blind and never tuned against: the honest estimate on unseen phrasing, kept as a floor
        ("blind2", 0.80),
    ],
)
def test_independent_sets_stay_above_their_floors(name, type_floor):
    from classifiers.labelled import roster_for
    from worktool.config import load_config

    dataset = DATA / f"{name}_messages.jsonl"
    classifier = RuleClassifier(load_config(roster_for(dataset)))
    ev = evaluate(load_labelled(dataset), classifier)
    assert ev.overall.sender_accuracy >= 0.99
    assert ev.overall.type_accuracy >= type_floor
