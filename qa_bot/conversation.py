"""Conversations: what the last turns were about, and reading a follow-up together with them.

People chat: after 侯马经济开发区的调度会是谁主持的？ they ask 他要求全区上下做什么？,
那临汾开发区呢？, 这个项目总投资多少？. Such a message leaves out what it asks about; read alone it
finds the wrong article or none. `read_message()` reads it with the conversation's last turn:

* "zone swap": 那临汾开发区呢？ — a bare zone with 呢: the previous question with the zone
  swapped (the frame kept);
* "attribute swap": 计划投资呢？ — a bare attribute with 呢: the previous subject, this attribute;
* "pronoun": 他/她/它/这个项目/该/其中/对方… — the subject filled in where it is known (他 → the
  person named before), and the article under discussion preferred;
* "implicit": 总投资多少？ — no zone, no marker, and the article under discussion covers the
  message's words (IDF-weighted) at least as well as the article it finds alone: that article
  is preferred;
* "bare": 为什么？ 多少？ 什么时候？ — nothing but a question word: about what was just said;
* "more": 还有别的开发区吗？ — the previous question without its zone, the article already
  shown left out;
* "zone carry": 调度会是谁主持的？ right after listing a zone's articles — asked about that zone.

A message that names its own subject (a zone of its own and its own question word, or words the
article under discussion does not hold) is a new question, answered exactly as without a
conversation. Only rules, the zone table and the parsed articles are used (no hub model).

A message that is only a zone or a short topic (侯马开发区, 再生金属) is a request to browse
(`browse_target()`): the service lists the matching articles instead of declining.

State is kept per conversation (a private chat, one user within a group, a REPL session), in
memory, bounded (a few turns of short strings each; at most `max_conversations` conversations,
the least recently used dropped first) and forgotten after `idle_seconds` without a message.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from qa_bot.chinese import to_simplified
from qa_bot.records import Article
from qa_bot.zones import ZoneTable

# A turn keeps its question and names cut to these lengths, so a conversation stays small.
MAX_TURN_CHARS = 200
MAX_NAMES = 6
TURNS_KEPT = 3

# -- cues ----------------------------------------------------------------------------------------
# Words that point back at something said before. 其他/其它 and 应该/因此 are not pointers.
_POINTER = re.compile(
    r"(?<![其])[他她它](?:们)?"
    r"|这(?:个|些|次|项|家|里|位|点|笔|批|一)|那(?:个|些|次|项|家|里|位|笔|批)"
    r"|(?<![应])该(?=[\u4e00-\u9fff])|其中|对方|上述|前者|后者|此(?=[次项人事])"
    r"|第[一二三四五六七八九十\d]+(?:点|条|项|个方面)|^那"
)
_ORDINAL_POINT = re.compile(r"第([一二三四五六七八九十]+)(?:点|条|项|个方面)")
_PERSON_POINTER = re.compile(r"(?<![其])[他她](?!们)")
_PROJECT_POINTER = re.compile(r"(?:这个|该|这一|此)项目")
# What a question asks: any of these makes a message a question, not a browse request.
_QUESTION_CUE = re.compile(
    r"什么|哪|谁|几|多少|多大|多长|多久|多高|多远|如何|怎么|怎样|为什么|为何|是否|有没有|是不是"
    r"|吗|呢|[？?]|何时|何处|何人"
)
# What is left of a question without a subject once these go: nothing.
_BARE_QUESTION = re.compile(
    r"什么时候|什么时间|什么地方|为什么|为何|怎么样|怎么|怎样|如何|多少钱|多少|多大|多久|多长|哪里|哪儿"
    r"|在哪里|在哪儿|在哪|哪天|哪年|什么|是谁|谁|几个|几家|几|呢|吗|啊|呀|是|有|那么|那|还|又|请问"
    r"|[？?。！!，,\s]"
)
_TAIL_PARTICLES = re.compile(r"[呢吗啊呀吧嘛。？?！!，,\s]+$")
_LEAD_PARTICLES = re.compile(r"^(?:那么|那|还有|另外|然后|再问一下|再问|请问)[，,\s]*")
_MORE = re.compile(r"还有(?:别的|其他|其它|哪些|什么|没有)?.{0,12}吗|还有(?:别的|其他|其它|哪些)")
_QUESTION_TAIL = re.compile(
    r"(?:是|有|为|要|在|达|能)?(?:多少|几[个家项次名份种条座台辆倍年天岁人万亿点]?|什么|哪些?[\u4e00-\u9fff]{0,3}"
    r"|谁|怎样|怎么样|如何|为什么)[\u4e00-\u9fff]{0,3}[？?]*$"
)
# A name written inside quotes (“冬季行动”) is a named thing: a project, an event, a campaign.
_QUOTED = re.compile(r"[“\"「『]([^”\"」』]{2,20})[”\"」』]")
_PROJECT_SPAN = re.compile(r"[\u4e00-\u9fff\dA-Za-z“”]{2,30}?(?:项目|产业园|基地|中心|工程)")
# Longest browse topic, in characters: longer text is a question without a question mark.
MAX_TOPIC_CHARS = 12
# An article under discussion is preferred for an unmarked message when it covers at least
# this share of the message's words (IDF-weighted), and no less than the article found alone.
IMPLICIT_MIN_COVERAGE = 0.5


@dataclass(frozen=True)
class Turn:
    """What one turn was about: enough to read the next message, nothing more."""

    question: str  # as understood (a follow-up already resolved)
    zone: str = ""  # the zone it was about: named in the question, else the answer's
    zone_mention: str = ""  # how the question wrote that zone (侯马经济开发区), to swap it
    article_id: str = ""  # the article the answer came from ("" when declined)
    title: str = ""
    people: tuple[str, ...] = ()  # named in the question, or the person the answer gave
    projects: tuple[str, ...] = ()  # quoted names and the project the answer gave
    at: float = 0.0
    answer_span: str = ""  # the key fact the answer gave (17个项目)
    browsed: bool = False  # the turn listed a zone's articles (侯马开发区)


class Conversation:
    """The last turns of one conversation; forgets them after `idle_seconds` of silence."""

    def __init__(
        self, idle_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._turns: tuple[Turn, ...] = ()
        self.last_seen = clock()

    def last(self) -> Turn | None:
        """The last turn, or None when there is none or the conversation went idle."""
        if self._turns and self.expired():
            self._turns = ()
        return self._turns[-1] if self._turns else None

    def expired(self) -> bool:
        return self.idle_seconds > 0 and self.clock() - self.last_seen > self.idle_seconds

    def remember(self, turn: Turn) -> None:
        self._turns = (*self._turns, _trimmed(turn))[-TURNS_KEPT:]
        self.last_seen = self.clock()

    def touch(self) -> None:
        self.last_seen = self.clock()

    def reset(self) -> None:
        self._turns = ()

    @property
    def turns(self) -> tuple[Turn, ...]:
        return self._turns

    def footprint_bytes(self) -> int:
        """Memory held by this conversation's state (the object, its turns and their strings)."""
        total = sys.getsizeof(self) + sys.getsizeof(self.__dict__) + sys.getsizeof(self._turns)
        for turn in self._turns:
            total += sys.getsizeof(turn)
            for value in vars(turn).values():
                total += sys.getsizeof(value)
                if isinstance(value, tuple):
                    total += sum(sys.getsizeof(item) for item in value)
        return total


class ConversationStore:
    """Conversations by key, at most `max_conversations`, least recently used dropped first."""

    def __init__(
        self,
        idle_seconds: float,
        max_conversations: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_conversations = max(max_conversations, 1)
        self.clock = clock
        self._conversations: OrderedDict[Hashable, Conversation] = OrderedDict()
        self._lock = threading.Lock()  # shells answer in worker threads

    def get(self, key: Hashable) -> Conversation:
        with self._lock:
            conversation = self._conversations.get(key)
            if conversation is None or conversation.expired():
                conversation = Conversation(self.idle_seconds, self.clock)
                self._conversations[key] = conversation
            self._conversations.move_to_end(key)
            while len(self._conversations) > self.max_conversations:
                self._conversations.popitem(last=False)
            return conversation

    def reset(self, key: Hashable) -> None:
        with self._lock:
            self._conversations.pop(key, None)

    def __len__(self) -> int:
        return len(self._conversations)


# -- reading a message ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """How a message is read: the question to answer and what to prefer while answering."""

    kind: str  # "new", "zone_swap", "attribute_swap", "pronoun", "implicit", "bare", "more",
    # "zone_carry"
    question: str  # the text retrieval and the answer stage work on
    understood_as: str = ""  # shown to the user for every reading but "new"
    prefer_article: str = ""  # the article under discussion, ranked first when found
    exclude_article: str = ""  # "more": the article already shown
    own_words: str = ""  # the message with its subject filled in, without borrowed context

    @property
    def words(self) -> str:
        """What the message itself says: checked against the article under discussion."""
        return self.own_words or self.question

    @property
    def is_followup(self) -> bool:
        return self.kind != "new"


def read_message(message: str, last: Turn | None, zones: ZoneTable) -> Reading:
    """Read `message` with the conversation's last turn (see the module docstring); the
    "implicit" reading needs retrieval and is decided by `implicit_followup()`."""
    new = Reading("new", message)
    if last is None:
        return new
    text = to_simplified(message)
    named_zones = zones.find(text) or zones.unknown_mentions(text)
    if re.search(r"呢[？?。！!\s]*$", text) and not _has_own_question(text):
        remainder = _TAIL_PARTICLES.sub("", _LEAD_PARTICLES.sub("", text))
        if named_zones:
            return _zone_swap(remainder, last, zones)
        if remainder and last.article_id:
            understood = _attribute_swap(remainder, last)
            return Reading("attribute_swap", understood, understood,
                           prefer_article=last.article_id)
    if _MORE.search(text) and last.question and not named_zones:
        return _more(last)
    if last.browsed and last.zone and not named_zones and _QUESTION_CUE.search(text):
        # 侯马开发区 (a list), then 调度会是谁主持的？: asked about the zone just browsed.
        understood = f"{last.zone}{message}"
        return Reading("zone_carry", understood, understood)
    if named_zones or not last.article_id:
        return new  # names its own subject (a zone), or nothing to refer back to
    if _is_bare_question(text):
        # 为什么？ 多少？ 什么时候？ — nothing but the question: about what was just said.
        return Reading("bare", with_context(message, last), f"{message}（接着谈《{last.title}》）",
                       prefer_article=last.article_id, own_words=with_context(message, last))
    if _POINTER.search(text):
        filled = _fill_subject(message, last)
        shown = filled if filled != message else f"{message}（接着谈《{last.title}》）"
        # 第一点 → 一是, the way news lists points; for finding the sentence, not for showing.
        asked = _ORDINAL_POINT.sub(lambda m: f"{m.group(1)}是", filled)
        asked_alone = asked
        # Without a subject filled in, what the previous question was about stands before it.
        if filled == message:
            asked = with_context(asked, last)
        return Reading("pronoun", asked, shown, prefer_article=last.article_id,
                       own_words=asked_alone)
    return new


def implicit_followup(
    message: str,
    last: Turn,
    zones: ZoneTable,
    coverage: Callable[[str, str], float],
    found_alone: str,
) -> bool:
    """A question with no zone and no pointer (总投资多少？) is about the article under
    discussion when that article holds its words (IDF-weighted `coverage(text, article_id)`)
    at least as well as `found_alone`, the article the message finds by itself."""
    text = to_simplified(message)
    if not last.article_id or zones.find(text) or zones.unknown_mentions(text):
        return False
    if not _QUESTION_CUE.search(text):
        return False
    here = coverage(text, last.article_id)
    return here >= IMPLICIT_MIN_COVERAGE and (
        found_alone == last.article_id or here >= coverage(text, found_alone)
    )


def with_context(question: str, last: Turn) -> str:
    """The question with what the previous one was about before it (晋中这次集中签约了，这些
    项目总投资多少？): the answer stage then finds the sentence that holds both."""
    previous = _strip_question_mark(to_simplified(last.question))
    tail = _QUESTION_TAIL.search(previous)
    context = previous[: tail.start()] if tail else ""
    # The fact just given: the next one asked is often beside it (17个项目，总投资572亿元) —
    # except for a part of it (其中…), which is another fact.
    if "其中" not in question:
        context += last.answer_span
    return f"{context}，{question}" if context else question


def browse_target(message: str, zones: ZoneTable) -> tuple[str, str] | None:
    """("zone", canonical) or ("topic", words) when the message only names a zone or a topic."""
    text = re.sub(r"[。！!，,\s]+$", "", to_simplified(message).strip())
    if not text or _QUESTION_CUE.search(text) or len(text) > MAX_TOPIC_CHARS:
        return None
    zone = zones.canonical(text)
    if zone is not None:
        return "zone", zone
    if re.fullmatch(r"[\u4e00-\u9fffA-Za-z0-9·“”]+", text) and len(text) >= 2:
        return "topic", text
    return None


def newest_first(articles: list[Article], issue_order: dict[str, str]) -> list[Article]:
    """Newest issue first (its date, else when it was ingested), then print order."""

    def key(article: Article) -> tuple:
        return (article.date or issue_order.get(article.issue, ""), article.issue, -article.line)

    return sorted(articles, key=key, reverse=True)


def turn_from(
    question: str,
    answer_article: Article | None,
    zones: ZoneTable,
    answer_span_text: str = "",
    people: tuple[str, ...] = (),
    at: float = 0.0,
) -> Turn:
    """The turn to remember after answering `question` (as understood)."""
    text = to_simplified(question)
    named = zones.find(text)
    zone = named[0] if named else (answer_article.zone if answer_article else "")
    mention = _zone_mention(text, zones) if named else ""
    projects = [m.group(1) for m in _QUOTED.finditer(question)]
    if answer_span_text and _PROJECT_SPAN.fullmatch(answer_span_text):
        projects.insert(0, answer_span_text)
    return Turn(
        question=question,
        zone=zone,
        zone_mention=mention,
        article_id=answer_article.article_id if answer_article else "",
        title=answer_article.title if answer_article else "",
        people=people,
        projects=tuple(projects),
        at=at,
        answer_span=answer_span_text,
    )


# -- the readings ----------------------------------------------------------------------------------
def _is_bare_question(text: str) -> bool:
    """Only question words and particles (为什么？ 多少呢？ 什么时候？ 是谁？)."""
    return bool(_QUESTION_CUE.search(text)) and not _BARE_QUESTION.sub("", text)


def _has_own_question(text: str) -> bool:
    """A question word of its own (not counting 呢/吗/？): 那潢川开发区落户了多少个项目呢？"""
    core = _TAIL_PARTICLES.sub("", text)
    return bool(re.search(r"什么|哪|谁|几|多少|如何|怎么|怎样|为什么|为何|是否", core))


def _zone_swap(remainder: str, last: Turn, zones: ZoneTable) -> Reading:
    """那临汾开发区呢？ → the previous question about 临汾开发区 (its frame kept)."""
    previous = last.question
    if zones.canonical(remainder) is not None or remainder in zones.unknown_mentions(remainder):
        previous = to_simplified(previous)
        if last.zone_mention and last.zone_mention in previous:
            understood = previous.replace(last.zone_mention, remainder, 1)
        else:
            # The people named belong to the old zone (李俊胜要求… → 临汾开发区要求…).
            for person in last.people:
                previous = previous.replace(person, "")
            understood = f"{remainder}{_strip_question_mark(previous)}？"
        return Reading("zone_swap", understood, understood)
    # 那介休签下的两个项目呢？ → a subject of its own with the previous question's predicate.
    understood = remainder + _predicate(previous, remainder) + "？"
    return Reading("zone_swap", understood, understood)


def _attribute_swap(remainder: str, last: Turn) -> str:
    """计划投资呢？ after 原平…产业园占地多少？ → 原平…产业园计划投资多少？"""
    previous = _strip_question_mark(to_simplified(last.question))
    tail = _QUESTION_TAIL.search(previous)
    if tail is None:
        return f"{remainder}（《{last.title}》）"
    subject = previous[: tail.start()]
    asked = tail.group().rstrip("？?")
    # The attribute the previous question asked about ends its subject part: 占地 goes for
    # 计划投资; a modifier (投产的) stands for a modifier and its noun (签约项目).
    words = re.findall(r"[\u4e00-\u9fff]{4}$" if remainder.endswith("的") else
                       r"[\u4e00-\u9fff]{2}$", subject)
    if words:
        subject = subject[: -len(words[0])]
    return f"{subject}{remainder}{asked}？"


def _predicate(previous: str, remainder: str) -> str:
    """The previous question after its subject, without what the new subject already says."""
    text = _strip_question_mark(to_simplified(previous))
    tail = _QUESTION_TAIL.search(text)
    if tail is None:
        return ""
    start = tail.start()
    # Take the attribute word(s) just before the question word back to a 的 or a known word.
    head = text[:start]
    cut = max(head.rfind("的"), head.rfind("了"))
    piece = head[cut + 1 :] if cut >= 0 else head[-4:]
    # Leading words the new subject already has (两个项目 / 3个项目) go.
    shared_end = 0
    for i in range(len(remainder) - 1):
        position = piece.find(remainder[i : i + 2])
        if position >= 0:
            shared_end = max(shared_end, position + 2)
    piece = piece[shared_end:]
    return piece + tail.group().rstrip("？?")


def _more(last: Turn) -> Reading:
    """还有别的开发区吗？ → the previous question without its zone, the shown article left out."""
    previous = to_simplified(last.question)
    if last.zone_mention:
        previous = previous.replace(last.zone_mention, "", 1)
    previous = previous.lstrip("的")
    understood = f"除{last.zone or '上述文章'}外，{_strip_question_mark(previous)}？"
    return Reading("more", previous, understood, exclude_article=last.article_id)


def _fill_subject(message: str, last: Turn) -> str:
    """他 → the person named before; 这个项目 → the project named before. Unknown: unchanged."""
    text = message
    if last.people and _PERSON_POINTER.search(text):
        text = _PERSON_POINTER.sub(last.people[0], text, count=1)
    if last.projects and _PROJECT_POINTER.search(text):
        text = _PROJECT_POINTER.sub(last.projects[0], text, count=1)
    return text


def _zone_mention(text: str, zones: ZoneTable) -> str:
    """The longest alias of a known zone as written in the text."""
    return next((alias for alias in zones.aliases_by_length() if alias in text), "")


def _strip_question_mark(text: str) -> str:
    return text.rstrip("？?。 ")


def _trimmed(turn: Turn) -> Turn:
    return Turn(
        question=turn.question[:MAX_TURN_CHARS],
        zone=turn.zone[:MAX_TURN_CHARS],
        zone_mention=turn.zone_mention[:MAX_TURN_CHARS],
        article_id=turn.article_id[:MAX_TURN_CHARS],
        title=turn.title[:MAX_TURN_CHARS],
        people=tuple(name[:20] for name in turn.people[:MAX_NAMES]),
        projects=tuple(name[:40] for name in turn.projects[:MAX_NAMES]),
        at=turn.at,
        answer_span=turn.answer_span[:MAX_TURN_CHARS],
        browsed=turn.browsed,
    )
