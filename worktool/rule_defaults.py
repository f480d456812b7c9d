"""Default word lists, patterns and weights of the rule classifier (docs/rules.md §2, §7), the sentiment
lexicon and the satisfaction parameters: the one home of these defaults.

`worktool.config.ClassifierConfig` deep-merges the `classifier:` section of the business YAML over
`DEFAULT_CLASSIFIER`: mappings merge key by key (so `{keywords: {投诉: 0}}` switches one default word
off and `{keywords: {差评: 3}}` re-weights or adds one), lists and numbers replace the default.

Weighted terms are `{term: weight}` maps. `keywords` are matched as substrings of the normalised text
(NFKC, case-folded, so `？！` are `?!` and `OK` is `ok`); `patterns` are regular expressions searched in
the same text, in linear time (RE2: no look-arounds, see worktool/linear_regex.py; a group named `hit`
is the span reported). A term contained in a longer matching term (any list) is dropped: `说好的` hides `好的`.
"""

from __future__ import annotations

from typing import Any

# Only pure data below; the code that interprets it lives in operators/rules.py and operators/sentiment.py.

NEGATORS = ["不", "没", "别", "未", "无", "勿", "莫"]  # single characters
# Words that start with a negator but negate nothing that follows them.
NEGATION_EXCEPTIONS = [
    "不小心",
    "不好意思",
    "是不是",
    "要不要",
    "能不能",
    "会不会",
    "可不可以",
    "行不行",
    "好不好",
    "在不在",
    "不管",
    "不过",
    "不错",
    "不少",
    "不久",
    "没事",
    "没关系",
    "无论",
    "别人",
    "别的",
    "不知道",
]

QUESTION_PATTERNS = [
    r"\?",
    r"吗|嘛",
    r"呢\s*$",
    r"怎么|为什么|为啥|什么|啥|哪|多少|多久|多长|(?:^|[^了前这好十过])几[点天号秒次条分时]|是不是|有没有|能不能"
    r"|可不可以|会不会|要不要|是否|咋",
    r"\b(how|what|why|when|where|who|which)\b",
]
HYPOTHETICAL_WORDS = ["如果", "要是", "假如", "万一", "的话", "早知道", "早知"]
REQUEST_WORDS = ["请", "帮我", "帮忙", "麻烦", "需要", "怎么办", "想要", "求", "能不能", "可以帮", "给我"]
# Owners talking to each other (chat_complain_discuss) rather than to us.
PEER_WORDS = [
    "大家",
    "有人",
    "有没有人",
    "姐妹们",
    "家人们",
    "兄弟们",
    "咱们",
    "你们有没有",
    "你们的号",
    "你们收到",
    "群里",
    "谁拿到",
    "他们",
    "同感",
    "我也是",
    "+1",
    # comparing one's own account with another owner's, reassuring or warning another owner
    "我也",
    "也是这样",
    "一样的情况",
    "跟我一样",
    "和我一样",
    "我那个号也",
    "我的号也",
    "别急",
    "小心点",
    "有谁",
    "你们有谁",
    "你们谁",
    "同问",
    "别信",
    "我跟你们说",
    "我跟你们讲",
    "跟你们说",
    "你那个号",
    "你的号",
]
# Vocatives that open a message addressed to the other owners: a "你们" after one means them, not us.
PEER_VOCATIVES = ["姐妹们", "家人们", "兄弟们", "宝子们", "朋友们", "大家", "各位", "姐妹", "宝子"]
# Addressed to us (the agency): turns grumbling into a complaint.
ADDRESSEE_WORDS = [
    "你们",
    "客服",
    "管理员",
    "售后",
    # asking whether anyone of ours is there or in charge ("有没有人管" is not asking the owners)
    "有人吗",
    "有人在吗",
    "有没有人管",
    "有人管",
    "没人管",
    "没人回",
]

USER_TYPES: dict[str, dict[str, Any]] = {
    "chat_after_sales": {
        # Not negatable: "扫不了", "无法认证" are after-sales problems, not their absence.
        "negatable": False,
        "keywords": {
            "扫码": 2.0,
            "二维码": 1.5,
            "二唯码": 1.5,
            "认证": 2.0,
            "实名": 2.0,
            "绑定": 1.5,
            "换绑": 2.0,
            "验证": 1.5,
            "验证码": 1.5,
            "核验": 2.0,
            "身份": 1.0,
            "身份证": 1.5,
            "出镜人": 2.0,
            "出境人": 2.0,
            "人脸": 2.0,
            "刷脸": 2.0,
            "申诉": 2.0,
            "封号": 2.0,
            "被封": 2.0,
            "解封": 2.0,
            "限流": 1.5,
            "违规": 1.5,
            "被下架": 1.5,
            "登录不上": 2.0,
            "登不上": 2.0,
            "登陆不上": 2.0,
            "限制登录": 2.0,
            "异常": 1.0,
            "风险": 1.0,
            "银行卡": 1.0,
            "被占用": 1.0,
            "qr code": 1.5,
            "verify": 1.5,
            "非本人": 1.5,
            "自拍视频": 0.5,
        },
        "patterns": {
            r"(扫|认证|验证|绑定?|登录|登陆|实名)[^,.。!?;]{0,6}(不了|不上|失败|不过|不成功|没反应|打不开|过不去|错误)": 1.5,
            r"不会(弄|拍|搞).{0,4}(认证|申诉|扫码|实名|验证)|(认证|申诉|扫码|实名|验证).{0,8}不会(弄|拍|搞)": 1.5,
        },
    },
    "chat_complaint": {
        "negatable": True,
        "keywords": {
            # strong (weight >= complaint_strong_weight): a complaint even among owners
            "投诉": 3.0,
            "举报": 3.0,
            "12315": 3.0,
            "消协": 3.0,
            "曝光": 3.0,
            "报警": 3.0,
            "退款": 2.5,
            "退钱": 3.0,
            "骗子": 3.0,
            "欺诈": 3.0,
            "差评": 2.5,
            "给个说法": 2.5,
            "不打算给钱": 2.5,
            "爱答不理": 2.5,
            "破服务": 2.5,
            # soft: a complaint when addressed to us, grumbling among owners otherwise
            "骗人": 2.0,
            "领导": 2.0,
            "上级": 2.0,
            "给个解释": 2.0,
            "什么意思": 1.5,
            "敷衍": 2.0,
            "不负责": 2.0,
            "太差": 2.0,
            "差劲": 2.0,
            "态度": 1.0,
            "不满意": 2.5,
            "失望": 2.0,
            "搞废": 2.0,
            "没人理": 2.0,
            "没人回": 2.0,
            "不回消息": 2.0,
            "说好的": 2.0,
            "怎么回事": 1.5,
            "还做不做": 2.0,
            "谁负责": 2.0,
            "效率": 1.0,
            "太低": 1.0,
            "太冲": 1.5,
            "不对": 1.0,
            "少了": 1.0,
            "结果呢": 1.5,
            "没动静": 1.0,
            "当初": 1.0,
            "乱发": 1.0,
            "不合作": 1.5,
            # anger and accusation
            "烦死": 2.0,
            "气死": 2.0,
            "爱咋咋": 2.5,
            "无语": 1.5,
            "离谱": 1.5,
            "恶心": 2.0,
            "坑人": 2.0,
            "忽悠人": 2.0,
            "凭什么": 2.0,
            "乱七八糟": 1.5,
            "乱挂": 2.0,
            "乱改": 2.0,
            "乱删": 2.0,
            # money wrongly counted or demanded, promises broken
            "算错": 2.0,
            "搞错": 1.5,
            "弄错": 1.5,
            "多扣": 2.0,
            "乱扣": 2.0,
            "交钱": 1.5,
            "充钱": 1.5,
            "折腾人": 1.5,
            "拖了": 1.5,
            "到底": 1.0,
            "赔偿": 2.0,
            "赔我": 2.0,
            "怎么赔": 2.0,
            "上次说": 1.5,
            "不是说": 1.5,
            "答应": 1.0,
        },
        "patterns": {
            r"为什么.{0,12}(没|不|还)": 2.0,
            r"(为什么|怎么).{0,4}(又|还|一直|老是).{0,6}(没|不)": 2.0,
            r"你们.{0,6}(能不能|到底|还[不没要管做])": 1.5,
            r"再(不|拖|这样)": 2.0,
            r"退.{0,2}钱": 2.5,
            r"(都|已经)(第.次|半个月|一个月|\d+天)": 1.0,
            r"就我(没|不)": 2.0,
            r"(弄|搞)(限流|封)": 2.0,
            # intensity: repeated "??"/"!!" only add to other evidence
            r"[?!]{2,}": 0.5,
            r"(?:^|[^多])(?P<hit>少(算|给|结|发)了?)": 2.0,  # not "多少给"
            # a demand repeated ("又让我", "天天叫我"), an expectation broken ("结果又")
            r"(又|天天|总是|老是|每次|一直)(让|叫|要|逼)我": 1.5,
            r"结果(又|还|就)|是不是又|怎么又": 1.5,
            r"被(你们|运营|客服|售后)": 2.5,
            r"破(平台|服务|公司|玩意|地方)": 2.5,
            r"钱[^,.。!?;]{0,2}不给|不给钱|找不到人|人[^,.。!?;]{0,2}找不到": 2.0,  # the owner as the victim of our people
            r"(押金|会员费|服务费|钱|费用)[^,.。!?;]{0,4}退|退给我": 2.5,
            # too little paid: "就给我结了3块钱"
            r"(就|才|只)(给我)?(结|给|到账|发|打)了?[0-9几一二三两五十百]+(块|元|毛|分钱)": 2.0,
            # our people acted on the owner's account: "你们运营把我橱窗…"
            r"(你们|运营|客服|售后).{0,6}(把|给|在)我.{0,12}(删|改|挂|换|下架|上架|弄|搞|发)": 3.0,
        },
    },
    "chat_private_operation": {
        "negatable": False,  # negation is written into the patterns (no negator between subject and verb)
        "keywords": {"私自": 1.5, "偷偷": 1.0},
        "patterns": {
            # "我 ... 删/隐藏/上架/改/换 ..." with no negator (nor 要/想/打算/准备) in between: the owner did it
            # (at most 12 characters between; a run of 打/准 counts as one with the character after it)
            r"(我|不小心)(?:[^,.。!?;没不别未要想打准]|[打准]*(?:打[^,.。!?;没不别未要想打准算]|准[^,.。!?;没不别未要想打准备]))"
            r"{0,12}?[打准]*(删|隐藏|下架|上架|清空|注销|关了|改了|改成|改回|换了|"
            r"换成|加了|挂了|挂到|退出)": 2.5,
            # "自己/私自 发/上传/剪/直播": publishing alone
            r"(自己|私自|偷偷)[^,.。!?;没不别未]{0,6}?(发|上传|剪|直播|开了|删|加|上架|挂|改)": 2.5,
            r"(作品|视频|商品|头像|昵称|名字|简介)[^,.。!?;没不别未]{0,3}?我(删|换|改|下架|隐藏)": 2.5,
        },
    },
    "chat_cooperation": {
        "negatable": False,
        "keywords": {
            "配合": 1.5,
            "发给谁": 1.0,
            "按你们说的": 2.0,
            "搞定": 2.0,
            "马上弄": 1.5,
            "马上扫": 1.5,
        },
        "patterns": {
            r"(拍|发|扫|弄|录|认证|实名|绑定?|验证|搞)(好|完)了": 2.0,
            r"已经.{0,6}(发|拍|扫|弄|认证|实名|绑|验证|提交|录)": 1.5,
            r"(马上|现在|今晚|晚上|下午|明天|回家|等下|一会|就)(就)?(弄|拍|发|扫|配合|录)": 1.5,
            r"要我(干嘛|做什么|发什么|拍什么|怎么)|需要我.{0,4}(发|拍|配合|做)": 2.0,
        },
    },
    "chat_complain_discuss": {
        "negatable": False,
        "keywords": {
            "靠谱": 1.5,
            "割韭菜": 2.5,
            "被坑": 2.0,
            "坑": 1.0,
            "套路": 2.0,
            "怀疑": 2.0,
            "白忙活": 2.0,
            "不抱希望": 2.0,
            "不指望": 2.0,
            "忽悠": 2.0,
            "被骗": 2.0,
            "骗局": 2.0,
            "悬": 1.5,
            "没动静": 1.0,
            "一分钱没": 1.5,
            "没出单": 1.5,
            "好惨": 1.5,
            "没人看": 1.5,
            "也就那样": 2.0,
            "太一般": 1.5,
            "真的假的": 2.0,
            "唉": 1.0,
            "赚钱吗": 1.5,
            "拿到钱": 1.0,
            "没收到钱": 1.0,
            "感觉": 0.5,
            "早知道": 1.5,
        },
        "patterns": {},
    },
    "chat_daily": {
        "negatable": False,
        "keywords": {
            "结算": 1.5,
            "佣金": 1.0,
            "提现": 1.5,
            "收益": 1.0,
            "到账": 1.0,
            "手续费": 1.5,
            "发票": 1.5,
            "合作周期": 1.5,
            "补号": 1.5,
            "什么时候": 1.0,
            "几点": 1.0,
            "多久": 1.0,
            "怎么算": 1.5,
            "早上好": 2.0,
            "中午好": 2.0,
            "下午好": 2.0,
            "晚上好": 2.0,
            "晚安": 2.0,
            "你好": 1.0,
            "大家好": 1.5,
            "谢谢": 2.0,
            "感谢": 2.0,
            "辛苦": 1.5,
            "thanks": 1.5,
            "thank": 1.5,
            "快乐": 2.0,
            "哈哈": 1.0,
            "666": 1.5,
            "明白了": 1.5,
            "请问": 1.0,
            "数据": 0.5,
            "进度": 1.0,
            "愉快": 2.0,
            "是什么意思": 2.0,
            # a refund as a noun (a buyer's refund, a refunded order) is no demand for one
            "退款的": 1.0,
            "退款单": 1.0,
            "退款订单": 1.0,
            "买家退款": 1.5,
            "顾客退款": 1.5,
            "客户退款": 1.5,
            "扣佣金": 1.0,
        },
        "patterns": {r"^早[!~.。]*$": 2.0},
    },
    "chat_other": {
        "negatable": False,
        "keywords": {
            "加v": 3.0,
            "加微": 3.0,
            "私聊我": 2.0,
            "免费领取": 3.0,
            "领取免费": 3.0,
            "兼职": 2.0,
            "日赚": 3.0,
            # ads, chain messages, shared links, a message in the wrong group
            "私聊": 1.5,
            "有要的": 2.0,
            "有需要的私": 2.5,
            "九成新": 2.5,
            "出售": 2.0,
            "转让": 2.0,
            "二手": 2.0,
            "领红包": 2.5,
            "抢红包": 2.5,
            "砍一刀": 3.0,
            "帮忙砍": 3.0,
            "帮忙投票": 2.5,
            "优惠券": 2.0,
            "招聘": 2.0,
            "扫码领": 3.0,
            "复制打开": 2.0,
            "复制链接": 2.0,
            "发错群": 3.0,
            "走错群": 3.0,
            "发错地方": 3.0,
            "发错了,不好意思": 3.0,
            "需要的加": 2.5,
            "有需要的": 1.5,
            "加我": 1.5,
            "大促": 2.0,
            "五折": 2.0,
            "特价": 2.0,
            "包邮": 2.0,
            "点个赞": 2.5,
            "点赞": 1.5,
            "拉票": 2.5,
        },
        "patterns": {
            r"^\s*https?://\S+\s*$": 3.0,
            r"https?://|www\.": 1.5,
            r"^\s*(\[[^\]]{1,6}\]\s*)+$": 3.0,
            r"^\s*(测试|test|testing)\s*(一下)?\s*\d*\s*[.。!]*$": 3.0,
            r"^\s*转发[:：]": 2.5,
            r"转发.{0,4}\d+个?群": 2.5,
            r"(那条|这条|消息|信息|刚才|刚刚)[^,.。!?;]{0,3}发错": 3.0,
            r"^(不好意思|抱歉|sorry)?\W*发错了\W*(不好意思|抱歉|sorry)?\W*$": 3.0,
        },
    },
}

# docs/rules.md §7 user-response words (a refusal word wins over a response word in the same message).
RESPONSES: dict[str, Any] = {
    "responded": ["在", "在的", "来了", "好的", "收到", "可以", "行", "是的"],
    "refused": ["没时间", "不想", "不弄了", "不配合"],
    # Extra words that also acknowledge a request (classification only, not §7 monitoring).
    "acknowledgements": [
        "在呢",
        "我在",
        "好",
        "好滴",
        "好嘞",
        "好哒",
        "嗯",
        "嗯嗯",
        "ok",
        "okay",
        "对",
        "对的",
        "行的",
    ],
    # Words allowed around an acknowledgement in an "acknowledgement only" message.
    "fillers": [
        "现在",
        "了",
        "啊",
        "呀",
        "哈",
        "的",
        "我",
        "呢",
        "哦",
        "嘞",
        "滴",
        "吧",
        "来",
        "也",
        "都",
        # time words: "明天上午可以", "晚上8点可以"
        "今天",
        "明天",
        "后天",
        "今晚",
        "晚上",
        "下午",
        "上午",
        "中午",
        "早上",
        "等下",
        "等会",
        "一会",
        "待会",
        "随时",
        "周末",
        "点",
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
    ],
    "refusal_words": {"不方便": 2.0, "没空": 2.0, "不拍了": 2.0, "不想拍": 2.0, "太麻烦": 1.0},
    # A response word negated by one of these is a refusal ("不行", "不可以"); "没收到" only reports.
    "refusal_negators": ["不"],
    # A response word followed by one of these is a question ("在吗", "可以吗"), not an answer.
    "question_suffixes": ["吗", "么", "嘛", "?", "不"],
    # Votes for chat_cooperation:
    "refused_weight": 2.5,  # a `refused` word
    "negated_response_weight": 2.0,  # a negated response word ("不行", "不可以") is a refusal
    "ack_weight": 1.5,  # an acknowledgement opening a longer message ("好的，马上弄")
    "ack_only_weight": 3.0,  # a message that is nothing but acknowledgements and fillers
}

# chat_* codes that get a reply when they are a question or request to us (docs/rules.md §5).
REPLY_TYPES = [
    "chat_daily",
    "chat_after_sales",
    "chat_complaint",
    "chat_cooperation",
    "chat_private_operation",
]
# Problem reports are implicit requests for help, question or not.
ALWAYS_REPLY_TYPES = ["chat_after_sales", "chat_complaint"]

STAFF: dict[str, Any] = {
    # Cues that a staff message answers an owner (staff_reply_user).
    "reply": {
        "keywords": {
            "是的": 2.0,
            "可以的": 2.0,
            "不用": 2.0,
            "放心": 2.0,
            "已经": 1.5,
            "帮您": 1.5,
            "您": 1.0,
            "亲": 1.0,
            "稍等": 2.0,
            "好的": 1.5,
            "收到": 1.5,
            "对的": 2.0,
            "因为": 1.5,
            "正常": 1.5,
            "结算": 1.0,
            "不影响": 2.0,
            "不能": 1.0,
            "就行": 1.5,
            "登记": 1.0,
            "反馈": 1.0,
            "处理": 1.0,
            "通过了": 1.5,
            "到账": 1.0,
            "没问题": 2.0,
            "会影响": 1.0,
            "免": 1.0,
            "就好": 1.5,
            "这个是": 1.0,
            "延迟": 1.0,
            "别担心": 2.0,
            "一般": 1.0,
        },
        "patterns": {r"是.{1,8}的": 1.0},
    },
    # Cues that an @ of an owner is a task or reminder (staff_at_user) rather than an answer.
    "task": {
        "keywords": {
            "请": 1.5,
            "麻烦": 1.5,
            "记得": 2.0,
            "需要您": 2.0,
            "配合": 1.5,
            "在吗": 2.0,
            "回复": 1.5,
            "扫码": 1.0,
            "认证": 1.0,
            "实名": 1.0,
            "拍": 1.0,
            "发": 0.5,
            "准备": 1.0,
            "验证": 1.0,
            "绑定": 1.0,
            "联系": 1.0,
            "人呢": 2.0,
            "报一下": 2.0,
            "please": 1.5,
            "asap": 1.5,
            "方便": 1.0,
        },
        "patterns": {r"扫.{1,2}码": 1.0},
    },
    # Cues of staff talking about themselves or to everyone (staff_other).
    "other": {
        "keywords": {
            "欢迎": 3.0,
            "通知": 3.0,
            "【": 1.0,
            "我是": 2.0,
            "请假": 2.0,
            "吃饭": 2.0,
            "开会": 2.0,
            "顶一下": 2.0,
            "维护": 1.0,
            "我来": 2.0,
            "由我": 2.0,
        },
        "patterns": {},
    },
    "reply_threshold": 1.0,
    # "@我" in "有事@我" names the writer, not an owner.
    "self_mentions": ["我", "我们", "本人"],
    # An @ of an owner is an answer only when the answer cues clearly dominate.
    "at_reply_min": 2.0,
}

OPERATOR: dict[str, Any] = {
    "tone_hard": {
        "negatable": True,
        "keywords": {
            "马上": 1.0,
            "必须": 1.0,
            "立刻": 1.0,
            "快点": 1.5,
            "别废话": 2.5,
            "听不懂吗": 2.5,
            "听不懂": 2.0,
            "赶紧": 1.5,
            "别磨蹭": 2.0,
            "磨蹭": 1.5,
            "别拖": 1.5,
            "说了多少遍": 2.0,
            "说了多少次": 2.0,
            "搞什么": 2.0,
            "别干了": 2.0,
            "再不配合": 2.0,
            "等你半天": 1.5,
            "没有商量": 1.5,
            "都几点了": 1.5,
            # insults
            "猪": 2.5,
            "蠢": 2.5,
            "笨蛋": 2.5,
            "废物": 2.5,
            "脑子": 2.0,
            "有病": 2.5,
            "滚": 2.5,
            "傻": 2.5,
            "白痴": 2.5,
            "垃圾": 2.0,
            # contempt and ultimatums
            "趁早": 2.0,
            "别浪费": 1.5,
            "服了": 1.5,
            "就知道": 1.0,
            "最后说一次": 2.5,
            "最后一次": 1.5,
            "办不好": 1.5,
            "做不好": 1.5,
            "什么东西": 1.5,
            "你自己看看": 1.5,
            "干不好": 1.5,
            "一天到晚": 1.0,
            "活不干": 2.0,
        },
        "patterns": {
            r"到底.{0,6}(想不想|要不要|能不能|做不做|干不干|行不行|还[做干弄])": 2.0,
            r"(不想|不愿意|做不到|干不了|完成不了|不能)(做|干|弄)?[^,.。!?;]{0,4}(就别|就滚|别做|别干|趁早)": 2.0,
            r"(连|这点|这么点|这种)[^,.。!?;]{0,6}(都|也)[^,.。!?;]{0,3}(不|没)(好|会|了|明白|懂)": 2.0,
            r"说了.{0,3}(遍|次)": 2.0,
            r"还不(弄|做|发|拍|扫|干|动)": 1.0,
        },
    },
    # Phrases that hold a harsh word without its tone: "马上就好" (soon) hides "马上".
    "calm": ["马上就好", "马上好", "马上恢复", "马上就到", "马上到", "马上就能", "马上就可以", "马上更新"],
    "hard_threshold": 1.0,
    # docs/rules.md §2: more than two ！ is harsh (counted after NFKC, so ! and ！ both count).
    "exclamation_limit": 2,
    "exclamation_weight": 2.5,
    # Politeness softens urgency words: "麻烦您马上扫一下码，谢谢" is firm, not harsh.
    "politeness": {"请": 0.5, "麻烦": 0.8, "谢谢": 0.8, "辛苦": 0.8, "您": 0.5, "帮忙": 0.5},
    # Urgency about the operator's own action is not harsh: "我马上安排".
    "self_subjects": ["我", "我们", "我这边"],
    "assign": {
        "keywords": {
            "拍": 1.0,
            "发": 0.8,
            "直播": 1.0,
            "扫码": 1.0,
            "认证": 1.0,
            "负责": 1.5,
            "安排": 1.5,
            "准备": 1.0,
            "录": 1.0,
            "选品": 1.0,
            "完成": 1.0,
            "素材": 1.0,
            "统一": 1.0,
            "帮忙": 0.5,
            "挂": 1.0,
            "出镜": 1.0,
            "开播": 1.0,
            "下架": 1.0,
            "上架": 1.0,
            "配合": 1.0,
            "确认": 0.5,
            "报到": 1.5,
            "报个到": 1.5,
            "开始": 0.5,
            # time words make a task out of a verb
            "今天": 0.5,
            "明天": 0.5,
            "今晚": 0.5,
            "晚上": 0.5,
            "下午": 0.5,
            "上午": 0.5,
            "这周": 0.5,
            "马上": 0.5,
            "尽快": 0.5,
            "之内": 0.5,
            "之前": 0.5,
        },
        "patterns": {
            r"发.{0,3}条": 1.5,
            r"扫.{0,3}码": 1.0,
            r"每个号": 1.0,
            # an instruction to owners: "你点一下", "各位…都在群里", "你出镜半小时就行"
            r"(你|您|各位|大家|号主)[^,.。!?;]{0,8}(一下|就行|就可以|都要|记得)": 1.0,
            r"(?:^|^们|[^我们]|[^我]们)(?P<hit>(下架|上架|删|改|换|发|拍|扫|点|填|报|弄|确认|检查)一下)": 1.0,  # not "我(们)…"
            r"(周[一二三四五六日末天]|星期.|[0-9一二三四五六七八九十]+号)": 0.5,
            r"[0-9一二三四五六七八九十]+点(前|之前|半|开始|开场)?": 0.5,
        },
    },
    # Evaluative or social cues: subtracted from the assignment score.
    "other": {
        "keywords": {
            "我马上": 2.0,
            "我来": 2.0,
            "我这边": 1.5,
            "我再": 1.5,
            "我跟": 1.5,
            "不错": 1.5,
            "辛苦了": 1.5,
            "加油": 1.5,
            "挺好": 1.5,
            "表现": 1.5,
            "效果": 1.0,
            "吃饭": 1.5,
            # introducing oneself, reassuring, talking to our own staff about figures
            "我是": 2.0,
            "由我": 2.0,
            "放心": 1.5,
            "没关系": 1.5,
            "别担心": 1.5,
            "不用担心": 1.5,
            "稍等": 1.0,
            "完成率": 1.5,
            "你们售后": 2.0,
            "跟一下": 2.0,
            "跟进": 2.0,
            "跟下": 2.0,
            "售后": 1.0,
            "太低": 1.0,
            "太高": 1.0,
        },
        "patterns": {},
    },
    "assign_threshold": 1.5,
    "mention_weight": 1.5,
}

STAFF_COMMANDS = {
    "[暂停回复]": "pause_replies",
    "[恢复回复]": "resume_replies",
    "[已解决]": "solved",
    "[转人工]": "handover",
}

SENTIMENT: dict[str, Any] = {
    "positive": {
        "谢谢": 1.0,
        "感谢": 1.0,
        "好的": 0.5,
        "没问题": 1.0,
        "收到": 0.3,
        "可以": 0.3,
        "满意": 1.5,
        "不错": 1.0,
        "棒": 1.0,
        "给力": 1.0,
        "辛苦": 0.8,
        "开心": 1.0,
        "哈哈": 0.6,
        "666": 0.8,
        "快乐": 1.0,
        "放心": 0.5,
        "太好了": 1.5,
        "赞": 1.0,
        "thanks": 1.0,
        "thank": 1.0,
        "靠谱": 1.0,
        "明白了": 0.5,
        "愉快": 1.0,
        "👍": 1.0,
        "😊": 0.8,
        "😄": 0.8,
        "🎉": 0.8,
        "[强]": 1.0,
        "[微笑]": 0.5,
    },
    "negative": {
        "不行": 1.0,
        "不好": 1.0,
        "太麻烦": 1.0,
        "急": 0.5,
        "快点": 0.8,
        "为什么": 0.5,
        "投诉": 2.0,
        "举报": 2.0,
        "骗": 2.0,
        "垃圾": 2.0,
        "失望": 2.0,
        "生气": 2.0,
        "烦": 1.0,
        "坑": 1.5,
        "差劲": 2.0,
        "太差": 2.0,
        "退款": 1.5,
        "退钱": 2.0,
        "不满": 2.0,
        "无语": 1.5,
        "离谱": 1.5,
        "敷衍": 1.5,
        "没人理": 1.5,
        "唉": 1.0,
        "惨": 1.0,
        "白忙活": 1.5,
        "怀疑": 1.0,
        "悬": 1.0,
        "割韭菜": 2.0,
        "忽悠": 1.5,
        "套路": 1.0,
        "没时间": 0.5,
        "不想": 0.8,
        "曝光": 1.5,
        "报警": 2.0,
        "欺诈": 2.0,
        "什么意思": 1.0,
        "不负责": 2.0,
        "搞废": 2.0,
        "一分钱没": 1.5,
        "别废话": 2.0,
        "听不懂": 1.5,
        "蠢": 2.0,
        "猪": 1.5,
        "废物": 2.0,
        "担心": 0.8,
        "😡": 2.0,
        "😠": 2.0,
        "[捂脸]": 0.3,
        "[流泪]": 1.0,
        "不配合": 1.0,
        "不弄了": 0.8,
        "看着办": 1.5,
        "别干了": 1.5,
        "长点脑子": 2.0,
        "太一般": 1.0,
        "没人看": 1.0,
        "没动静": 0.8,
        "被坑": 1.5,
        "靠不住": 1.5,
    },
    # Words that contain a sentiment word but carry none; matching them hides it ("麻烦您" is polite).
    "neutral": ["麻烦", "不好意思", "烦请", "急需"],
    # Multiply the weight of the next sentiment word.
    "intensifiers": {"太": 1.5, "非常": 1.5, "很": 1.3, "真": 1.3, "特别": 1.5, "超": 1.3},
    # A negated negative word counts this much positive ("不用担心"), a negated positive fully negative.
    "negated_negative_factor": 0.25,
    # Added to the negative side per "!" beyond the first when the message is negative.
    "exclamation_boost": 0.2,
}

# Rolling satisfaction per user (operators/sentiment.py documents the formula).
SATISFACTION: dict[str, Any] = {
    "initial": 0.5,  # new users start neutral
    "alpha": 0.35,  # weight of a message with a clear sentiment
    "neutral_band": 0.1,  # |sentiment| below this is neutral
    "neutral_decay": 0.05,  # neutral messages pull the score back toward `initial` this much
    "complaint_target": 0.0,  # a chat_complaint pulls toward this target ...
    "complaint_alpha": 0.5,  # ... with this weight
    "low": 0.3,  # docs/rules.md §3/§4: user_low_satisfaction / low_satisfaction below this
    "high": 0.7,  # docs/rules.md §4: user_satisfied above this
    "idle_days": 30,  # users not seen for this long (event time) are forgotten
    "sweep_interval_s": 3600,  # how often (event time) idle users are swept
}

DEFAULT_CLASSIFIER: dict[str, Any] = {
    "threshold": 1.0,
    "complaint_strong_weight": 2.5,
    "peer_question_weight": 1.5,  # owners asking each other ("大家都结算了吗") vote for chat_complain_discuss
    "negation_window": 4,
    "negators": NEGATORS,
    "negation_exceptions": NEGATION_EXCEPTIONS,
    "question_patterns": QUESTION_PATTERNS,
    "hypothetical_words": HYPOTHETICAL_WORDS,
    "request_words": REQUEST_WORDS,
    "peer_words": PEER_WORDS,
    "peer_vocatives": PEER_VOCATIVES,
    "addressee_words": ADDRESSEE_WORDS,
    "user": USER_TYPES,
    "responses": RESPONSES,
    "reply_types": REPLY_TYPES,
    "always_reply_types": ALWAYS_REPLY_TYPES,
    "staff": STAFF,
    "operator": OPERATOR,
    "staff_commands": STAFF_COMMANDS,
    "sentiment": SENTIMENT,
    "satisfaction": SATISFACTION,
}

# docs/rules.md §3 situation 2: the cues the rule fallback of the staff reply-quality score reads
# (operators/quality.py), each a list of linear-time patterns matched on the reply with its @mentions,
# spaces and emoji removed. A category is replaced as a whole in the configuration
# (`intervention.quality_cues.<category>`); an empty list switches it off.
QUALITY_CUES: dict[str, list[str]] = {
    # -- what pushes a reply down: the shapes of a brush-off, not a list of rude words --------------
    # Sending the owner elsewhere: (you) go ask / find / contact + a third party.
    "redirect": [
        r"(?:问|找|联系|咨询|去问|去找)(?:一下|下|问)?(?:别人|其他人|别的人|其他同事|客服|官方|平台|运营|群主|上级|领导|他们|她们|管理员|人工|老板|负责人)",
    ],
    # Leaving the owner to it: 自己 + a verb of finding out or doing.
    "self_help": [
        r"自己(?:去|再|先|好好)?(?:查|看|搜|弄|找|想|研究|琢磨|解决|处理|搞|问|试|百度|摸索|体会|悟)",
        r"(?:百度|搜)一?下(?:就|不就)",
        r"(?:看|翻)(?:群公告|公告|聊天记录|上面)(?:去|吧|啊)?$",
    ],
    # Disowning the matter: a negation of responsibility with the speaker as its object.
    "not_mine": [
        r"不(?:归|关|由|在)(?:我|我们)",
        r"(?:跟|和|与)(?:我|我们)(?:没|无|没有)(?:啥|什么)?(?:关系|关)",
        r"(?:我|我们)(?:不|没法|管不)(?:管|负责)",
        r"不是(?:我|我们)的(?:事|问题|责任)",
        r"管不(?:了|着)",
        r"没(?:我|我们)(?:的|什么|啥)?事",
    ],
    # Giving up without an alternative.
    "helpless": [
        r"(?:不知道|不清楚|不晓得|不了解|没办法|无能为力|帮不了|没辙|搞不定|解决不了)",
    ],
    # Pushing back at the owner: a rhetorical question or a reproach in the second person.
    "pushback": [
        r"你(?:难道|自己|就不能|不会|不能|不懂|没看|不看|看不|没听|听不)[^。！？?!，,\n]{0,10}(?:吗|么|嘛)",
        r"(?:说了|讲了|发了)(?:多少|几|好几|N|n)(?:遍|次)",
        r"(?:不是|早就|之前|刚才|都)(?:说|讲|发)(?:过|了)(?:了|吗|嘛)",
        r"(?:这|这个|这种)(?:都|也|还)(?:不会|不懂|要问|用问)",
        r"(?:烦不烦|问什么问|有什么好问|还要我教|听不懂|看不懂吗|怎么又是你|又来了)",
    ],
    # -- what lifts it: structure that helps ------------------------------------------------------
    # The speaker commits to act (also softens a redirect: "不归我管，我帮您转给负责的同事").
    "agency": [
        r"(?:我|我们|这边)(?:来|去|帮|给|这边|马上|立刻|先|会|已经|已|正在|在|看|查|问|处理|安排|跟进|核实|确认)",
        r"帮(?:你|您|忙)",
        r"(?:转给|转交|反馈给|报给|提交给)",
    ],
    # Steps, numbers, ordered instructions.
    "steps": [
        r"\d",
        r"(?:首先|然后|接着|其次|最后|再|第[一二三四五六七八九十])",
        r"(?:步骤|流程|入口|路径|位置)",
    ],
    # Verbs of doing that belong to the after-sales work.
    "action": [
        r"(?:点击|点开|点一下|点进|打开|进入|设置|提交|上传|填写|填一下|扫码|扫一下|扫个|绑定|认证|实名|登录|登陆|重新|选择|发送|发给|发一下|拍|录|截图|截个图|修改|更新|刷新|重启|卸载|安装|下载|查看|查一下|查询|核实|确认|申请|申诉|操作|处理|安排|联系|反馈|跟进|解决|恢复|到账|结算|补发|退回|审核|授权|开通|关闭|切换)",
    ],
    # A time commitment or a time fact.
    "time": [
        r"(?:今天|明天|后天|今晚|马上|立刻|立即|稍等|稍后|一会|等下|待会|分钟|小时|天内|个工作日|工作日|周[一二三四五六日末]|星期|之前|以内|之内|尽快|下午|上午|晚上|中午|早上|已经|月底|月初|号前)",
        r"[0-9一二三四五六七八九十两]+(?:点|天|号|日)",
    ],
    # An explanation: cause, condition, rule.
    "explanation": [
        r"(?:因为|所以|由于|原因|是因为|如果|的话|需要|要求|只要|就可以|就行|就好|导致|正常|一般|规则|系统|说明|意思是|是指)",
    ],
    # Courtesy toward the owner.
    "courtesy": [r"(?:您|请|麻烦|辛苦|抱歉|不好意思|感谢|谢谢)"],
}
