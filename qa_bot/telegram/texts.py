"""Everything the bot says, in one place: short, friendly, Chinese.

Texts that go out with HTML parse mode are HTML: anything inserted into them is escaped first.
"""

from __future__ import annotations

from telegram import BotCommand

from qa_bot.telegram.feedback import DOWN, UP
from qa_bot.telegram.render_html import esc

EXAMPLES = (
    "广灵经开区有多少家再生金属企业？",
    "侯马开发区召开了什么会？",
    "/zone 长治 企业管理讲座讲了什么？",
)
START_TEXT = (
    "你好！我是《山西开发区》公报问答机器人。\n"
    "直接发给我一个问题，我会在公报里找答案，并注明出自哪个开发区、哪篇文章。\n"
    "发送 /help 查看示例。"
)
HELP_TEXT = (
    "<b>怎么提问</b>\n"
    "私聊：直接发问题。\n"
    "群里：@我 提问、回复我的消息，或用 /ask 问题。\n\n"
    "<b>示例</b>\n" + "\n".join(f"• {esc(example)}" for example in EXAMPLES) + "\n\n"
    "<b>命令</b>\n"
    "/ask 问题 — 提问\n"
    "/zone 名称 问题 — 只在一个开发区的文章里找\n"
    "/zones — 公报中的开发区和文章数\n"
    "/latest — 最新一期的文章\n"
    "/new — 开始新的对话\n\n"
    "<b>接着问</b>\n"
    "问完一个问题可以接着问：他要求做什么？ 那临汾开发区呢？ 这个项目总投资多少？"
    "我会说明是怎么理解的；发 /new 重新开始。只发开发区或话题（如 侯马开发区）则列出相关文章。\n\n"
    "答案下面的按钮：更多结果、全文，以及 👍/👎 告诉我们答得好不好。"
)
REFUSED_PRIVATE = (
    "抱歉，你还没有使用这个机器人的权限。如需开通，请把你的用户 ID <code>{user_id}</code> "
    "发给管理员。"
)
REFUSED_GROUP = (
    "抱歉，本群还没有开通问答机器人。如需开通，请管理员把群 ID <code>{chat_id}</code> "
    "加入允许列表。"
)
REFUSED_BUTTON = "抱歉，你没有使用这个机器人的权限。"
RATE_LIMITED = "提问有点快了，请 {seconds} 秒后再问。🙏"
EMPTY_QUESTION = "请发一个问题，例如：{example}"
ASK_USAGE = "用法：/ask 问题，例如 /ask 广灵经开区有多少家再生金属企业？"
ZONE_USAGE = "用法：/zone 名称 问题，例如 /zone 长治 企业管理讲座讲了什么？"
UNKNOWN_ZONE = "公报里没有叫“{zone}”的开发区。发送 /zones 查看公报中的开发区。"
UNKNOWN_COMMAND = "不认识这个命令。发送 /help 查看用法。"
EXPIRED = "这条消息的按钮已过期，请重新提问。"
ARTICLE_GONE = "这篇文章已不在索引中（索引更新过），请重新提问。"
NOT_ADMIN = "只有管理员可以使用 /reload。"
APOLOGY = "抱歉，出了点问题，没能完成。请稍后再试。"
THANKS = {UP: "谢谢反馈！👍", DOWN: "谢谢反馈，我们会改进。👎"}
ALREADY_VOTED = "已经记录过了，谢谢！"
EMPTY_INDEX = "公报索引里还没有文章。"
NEW_CONVERSATION = "好的，重新开始。之后的问题不再接着上文理解。"

COMMANDS = [
    BotCommand("ask", "提问：/ask 问题"),
    BotCommand("zone", "只在一个开发区里找：/zone 名称 问题"),
    BotCommand("zones", "公报中的开发区和文章数"),
    BotCommand("latest", "最新一期的文章"),
    BotCommand("new", "开始新的对话（不再接着上文理解）"),
    BotCommand("help", "用法和示例"),
    BotCommand("start", "开始"),
]
