-- 0002: the 14 message types of docs/rules.md §2 (code, sender category, Chinese name, meaning, priority;
-- 1 = most urgent). Kept apart from 0001 so that the reference data has its own, visible rollback.
-- Assistants' messages use the staff codes; robot messages get no type.
--
-- ON CONFLICT ... DO UPDATE: these 14 rows are authoritative. If a code already exists (the postgres
-- sink registers an unknown code it meets with a placeholder name rather than failing the foreign key),
-- applying this migration restores the canonical name, category, description and priority.

INSERT INTO message_types (type_code, sender_category, name_zh, description, priority) VALUES
    ('chat_after_sales',       'user',     '售后任务',     '需要扫码、绑定、实名认证、出镜人验证，或为申诉拍自拍视频', 1),
    ('chat_complaint',         'user',     '用户投诉',     '不满意、抱怨、指责、威胁投诉', 1),
    ('chat_private_operation', 'user',     '号主私自操作', '号主自行添加商品、删除或发布作品', 1),
    ('chat_cooperation',       'user',     '需要配合',     '被要求配合：发作品、拍自拍视频、确认在线', 3),
    ('chat_complain_discuss',  'user',     '闲聊抱怨',     '号主之间闲聊、抱怨或怀疑，并非对我们说', 4),
    ('chat_daily',             'user',     '日常聊天',     '问候、闲聊、普通问题（结算、佣金、排期）', 5),
    ('chat_other',             'user',     '用户其他',     '其他用户消息', 10),
    ('staff_at_user',          'staff',    '@号主',        '工作人员@号主布置售后任务或提醒', 1),
    ('staff_reply_user',       'staff',    '回复号主',     '工作人员回答号主的问题', 3),
    ('staff_ask_user',         'staff',    '询问号主',     '工作人员向号主询问情况', 3),
    ('staff_other',            'staff',    '工作人员其他', '其他工作人员消息', 10),
    ('operator_tone_hard',     'operator', '运营语气强硬', '语气强硬（马上、必须、立刻、别废话等），可能影响号主配合', 1),
    ('operator_assign_user',   'operator', '运营安排号主', '运营安排号主配合工作', 2),
    ('operator_other',         'operator', '运营其他',     '其他运营消息', 10)
ON CONFLICT (type_code) DO UPDATE SET
    sender_category = EXCLUDED.sender_category,
    name_zh         = EXCLUDED.name_zh,
    description     = EXCLUDED.description,
    priority        = EXCLUDED.priority,
    is_enabled      = true;
