#!/usr/bin/env node
/*
 * Local Telegram Bot API emulator for qa_bot's end-to-end tests.
 *
 * Starts npm `telegram-test-api` (pinned at 4.2.1 in package.json, never edited inside
 * node_modules) and fixes it at run time so that python-telegram-bot 22 can talk to it.
 * See /work/shared/notes/telegram-emulator.md for why each fix exists; the Python side is
 * tests/telegram_harness.py.
 *
 *   node launcher.js [--exit-with-parent]
 *
 * Prints exactly one line on stdout once listening: {"port": 12345, "pid": 678}.
 * Everything else (warnings, unsupported methods, webhook failures) goes to stderr.
 *
 * Environment:
 *   PORT              port to listen on (default 0 = ephemeral)
 *   HOST              interface (default 127.0.0.1)
 *   BOT_USERNAME      getMe username (default QaTestBot)
 *   BOT_FIRST_NAME    getMe first_name (default "QA Test Bot")
 *   EMULATOR_STRICT   1 (default): reject what Telegram rejects (invalid HTML, empty or
 *                     >4096-character texts, replies to unknown messages, unknown callback
 *                     query ids); 0: accept anything
 *   EMULATOR_LOG      1: log every Bot API call on stderr
 *   STORE_TIMEOUT_S   how long stored updates live (default 3600)
 *
 * Bot side (what the bot under test calls), http://HOST:PORT/bot<token>/<method>:
 *   getMe, getUpdates (real long polling, offset/limit/allowed_updates, 409 on a second
 *   concurrent poller or while a webhook is set), sendMessage, editMessageText,
 *   editMessageReplyMarkup, deleteMessage(s), answerCallbackQuery, setWebhook (secret token
 *   header, failures logged), deleteWebhook (drop_pending_updates), getWebhookInfo, and
 *   success stubs for sendChatAction, set/get/deleteMyCommands, set/getMyDescription,
 *   set/getMyShortDescription, set/getMyName, set/getChatMenuButton, setMessageReaction,
 *   close, logOut. Anything else: HTTP 400 "Bad Request: method 'X' is not supported by
 *   telegram-test-api". Every call is recorded.
 *
 * User side (what the test calls), POST JSON:
 *   /sendMessage  {botToken, chat, from, text, entities?, reply_to_message_id?, ...}
 *   /sendCommand  same, entities required (a bot_command entity)
 *   /sendCallback {botToken, from, data, message | {message_id, chat}}
 *        -> {ok, result: <the update as the bot gets it>, webhook?: {status|error}}
 *   /getUpdates, /getUpdatesHistory  (upstream, unchanged)
 *   /_history  {token, chat_id?, include_deleted?}  -> bot and user messages, current state
 *   /_calls    {token?, method?, since?, clear?}    -> recorded Bot API calls
 *   /_wait     {token, version, timeout_ms}          -> returns once the token's state changes
 *   /_faults   {token?, status?, count?, methods?, delay_ms?, description?, retry_after?,
 *               interrupt?}  or {clear: true, token?};  GET /_faults lists active rules
 *   /_bot      {token, username?, first_name?}       -> per-token getMe identity
 *   GET /_health
 */
'use strict';

const path = require('path');
const http = require('http');

const PKG_DIR = path.dirname(require.resolve('telegram-test-api/package.json'));
const PINNED_VERSION = '4.2.1';
const pkgVersion = require('telegram-test-api/package.json').version;
if (pkgVersion !== PINNED_VERSION) {
  process.stderr.write(`[emulator] telegram-test-api ${pkgVersion} is installed but launcher.js `
    + `patches ${PINNED_VERSION}; run \`npm ci --prefix tests/telegram_emulator\`\n`);
  process.exit(2);
}
const TelegramServer = require('telegram-test-api');
// express and axios come with telegram-test-api; resolve them from there.
const fromPkg = (name) => require(require.resolve(name, { paths: [PKG_DIR] }));
const express = fromPkg('express');
const axios = fromPkg('axios');

const env = process.env;
const HOST = env.HOST || '127.0.0.1';
const PORT = Number(env.PORT || 0);
const STRICT = !['0', 'false', 'no', 'off'].includes(String(env.EMULATOR_STRICT || '1').toLowerCase());
const LOG_CALLS = ['1', 'true', 'yes', 'on'].includes(String(env.EMULATOR_LOG || '').toLowerCase());
const DEFAULT_IDENTITY = {
  username: env.BOT_USERNAME || 'QaTestBot',
  first_name: env.BOT_FIRST_NAME || 'QA Test Bot',
};
const STORE_TIMEOUT_S = Number(env.STORE_TIMEOUT_S || 3600);
const MAX_LONG_POLL_S = 50;
const MAX_WAIT_MS = 60000;
const MAX_TEXT_LENGTH = 4096;

const delay = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const log = (msg) => process.stderr.write(`[emulator] ${msg}\n`);

process.on('unhandledRejection', (reason) => {
  log(`unhandled promise rejection (ignored): ${reason && reason.stack ? reason.stack : reason}`);
});
process.on('uncaughtException', (err) => {
  log(`uncaught exception (ignored): ${err && err.stack ? err.stack : err}`);
});

// ---------------------------------------------------------------------------------------
// Upstream server, patched
// ---------------------------------------------------------------------------------------

// storeTimeout: the upstream default (60 s) purges unread messages during long suites.
const server = new TelegramServer({ port: 1, host: HOST, storeTimeout: STORE_TIMEOUT_S });

class ApiError extends Error {
  constructor(status, description, parameters) {
    super(description);
    this.status = status;
    this.description = description;
    this.parameters = parameters;
  }
}
const badRequest = (what) => new ApiError(400, `Bad Request: ${what}`);

const nowSeconds = () => Math.floor(Date.now() / 1000);
const toSeconds = (t) => {
  const n = Number(t);
  if (!Number.isFinite(n) || n <= 0) return nowSeconds();
  return n > 1e11 ? Math.floor(n / 1000) : Math.floor(n); // upstream stores milliseconds
};

// Known chats, learnt from user updates: id -> chat object (type, title, ...).
const chats = new Map();
function rememberChat(chat) {
  if (chat && chat.id !== undefined) chats.set(String(chat.id), { ...chat, id: Number(chat.id) });
}
function chatFor(chatId) {
  const known = chats.get(String(chatId));
  if (known) return { ...known };
  const id = Number(chatId);
  return id < 0 ? { id, type: 'group', title: `Chat ${id}` } : { id, type: 'private', first_name: `User ${id}` };
}
function chatInstance(chatId) {
  // Stable per chat, looks like Telegram's (a signed 64-bit-ish number as a string).
  let h = 1469598103934665603n;
  for (const ch of String(chatId)) h = BigInt.asIntN(63, (h ^ BigInt(ch.charCodeAt(0))) * 1099511628211n);
  return h.toString();
}

const identities = new Map(); // token -> {username, first_name}
function botUser(token) {
  const ident = identities.get(token) || DEFAULT_IDENTITY;
  const prefix = String(token).split(':')[0];
  let id = /^\d{1,15}$/.test(prefix) ? Number(prefix) : 0;
  if (!id) {
    for (const ch of String(token)) id = (id * 31 + ch.charCodeAt(0)) % 2147483647;
    id = id || 666;
  }
  return { id, is_bot: true, first_name: ident.first_name, username: ident.username };
}

// Patch 1: updates as PTB needs them (callback_query.chat_instance, dates in seconds, no
// emulator-internal fields).
const upstreamFormatUpdate = TelegramServer.formatUpdate;
TelegramServer.formatUpdate = function formatUpdate(update) {
  const out = upstreamFormatUpdate.call(this, update);
  if (out.message) {
    delete out.message.botToken;
    out.message.date = toSeconds(out.message.date || update.time);
  }
  if (out.callback_query) {
    const cq = out.callback_query;
    const msg = cq.message;
    cq.chat_instance = chatInstance(msg && msg.chat ? msg.chat.id : cq.from && cq.from.id);
    if (msg) {
      delete msg.botToken;
      msg.date = toSeconds(msg.date);
    }
  }
  return out;
};

// Patch 2: webhook delivery with the secret-token header, failures logged instead of killing
// the process (upstream throws from an un-awaited promise), ids taken synchronously. Like
// Telegram, a failed delivery is retried (in the background) for a few seconds: PTB calls
// setWebhook before its webhook server listens.
const WEBHOOK_RETRY_MS = [50, 100, 200, 400, 800, 1600, 3200];

async function postWebhook(update) {
  const webhook = server.webhooks[update.botToken];
  if (!webhook) return { error: 'webhook was deleted' };
  const headers = { 'Content-Type': 'application/json' };
  if (webhook.secret_token) headers['X-Telegram-Bot-Api-Secret-Token'] = webhook.secret_token;
  try {
    const resp = await axios({
      url: webhook.url,
      method: 'POST',
      data: TelegramServer.formatUpdate(update),
      headers,
      timeout: 10000,
      validateStatus: () => true,
    });
    if (resp.status > 299) {
      return { status: resp.status, error: `HTTP ${resp.status} ${JSON.stringify(resp.data)}` };
    }
    return { status: resp.status };
  } catch (err) {
    return { error: err.message };
  }
}

async function deliverWebhook(update) {
  const first = await postWebhook(update);
  if (first.error) {
    const url = (server.webhooks[update.botToken] || {}).url;
    log(`webhook delivery of update ${update.updateId} to ${url} failed: ${first.error}; retrying`);
    (async () => {
      for (const wait of WEBHOOK_RETRY_MS) {
        await delay(wait);
        if (stopping || !server.webhooks[update.botToken]) return;
        const again = await postWebhook(update);
        if (!again.error) return;
      }
      log(`webhook delivery of update ${update.updateId} to ${url} failed for good`);
    })().catch((err) => log(`webhook retry loop failed: ${err}`));
  }
  return first;
}
TelegramServer.prototype.addUserUpdate = async function addUserUpdate(update) {
  if (!update || !update.botToken) throw badRequest('the update must contain `botToken`');
  update.updateId = this.updateId++;
  this.storage.userMessages.push(update);
  if (this.webhooks[update.botToken]) {
    update.isRead = true;
    return deliverWebhook(update);
  }
  notifyPollers(update.botToken);
  return undefined;
};

// Patch 3: the clean-up daemon also purges the launcher's own stores.
const upstreamCleanUp = TelegramServer.prototype.cleanUp;
TelegramServer.prototype.cleanUp = function cleanUp() {
  upstreamCleanUp.call(this);
  const limit = Date.now() - STORE_TIMEOUT_S * 1000;
  for (const [token, list] of history) history.set(token, list.filter((e) => e.time_ms > limit));
  for (const [token, list] of calls) calls.set(token, list.filter((c) => c.time_ms > limit));
};

// ---------------------------------------------------------------------------------------
// Launcher state: message history in Telegram format, recorded calls, change versions
// ---------------------------------------------------------------------------------------

const history = new Map(); // token -> [{kind: 'bot'|'user', chat_id, message_id, time_ms, message, sent, edit_count, deleted}]
const calls = new Map(); // token -> [call]
const versions = new Map(); // token -> int, bumped on every change visible to the test
const waiters = new Set(); // pending /_wait requests
const pollers = new Set(); // pending getUpdates long polls
const allowedUpdates = new Map(); // token -> [types] (Telegram keeps the last setting)
const answeredCallbacks = new Set();
const knownCallbacks = new Map(); // callback_query id -> token
const botSettings = new Map(); // token -> {commands: {}, description, ...}
let faults = [];
let faultSeq = 1;
let callSeq = 1;
let stopping = false;

const listFor = (map, token) => {
  if (!map.has(token)) map.set(token, []);
  return map.get(token);
};
const settingsFor = (token) => {
  if (!botSettings.has(token)) botSettings.set(token, { commands: {}, description: '', short_description: '', name: '', menu_button: { type: 'default' } });
  return botSettings.get(token);
};

function bump(token) {
  versions.set(token, (versions.get(token) || 0) + 1);
  for (const w of [...waiters]) if (w.token === token) w.done();
}

function findEntry(token, chatId, messageId, kinds = ['bot', 'user']) {
  return listFor(history, token).find((e) => !e.deleted && kinds.includes(e.kind)
    && String(e.chat_id) === String(chatId) && String(e.message_id) === String(messageId));
}

function withoutReply(message) {
  const copy = { ...message };
  delete copy.reply_to_message;
  return copy;
}

// ---------------------------------------------------------------------------------------
// Telegram HTML (parse_mode=HTML) -> plain text + entities, with Telegram's error messages
// ---------------------------------------------------------------------------------------

const HTML_TAGS = {
  b: 'bold', strong: 'bold', i: 'italic', em: 'italic', u: 'underline', ins: 'underline',
  s: 'strikethrough', strike: 'strikethrough', del: 'strikethrough', 'tg-spoiler': 'spoiler',
  span: 'spoiler', a: 'text_link', code: 'code', pre: 'pre', blockquote: 'blockquote',
  'tg-emoji': 'custom_emoji',
};

class ParseError extends Error {}

function decodeHtmlEntity(src, pos) {
  // Mirrors tdlib: &lt; &gt; &amp; &quot; and numeric references; the ';' is optional.
  let end = pos + 1;
  let code = 0;
  if (src[end] === '#') {
    end++;
    if (src[end] === 'x' || src[end] === 'X') {
      end++;
      const start = end;
      while (end < src.length && /[0-9a-fA-F]/.test(src[end])) end++;
      code = end > start ? parseInt(src.slice(start, end), 16) : 0;
    } else {
      const start = end;
      while (end < src.length && /[0-9]/.test(src[end])) end++;
      code = end > start ? parseInt(src.slice(start, end), 10) : 0;
    }
    if (!code || code >= 0x10ffff || end - pos >= 10 || (code >= 0xd800 && code <= 0xdfff)) return null;
  } else {
    while (end < src.length && /[A-Za-z]/.test(src[end])) end++;
    const name = src.slice(pos + 1, end);
    code = { lt: 60, gt: 62, amp: 38, quot: 34 }[name] || 0;
    if (!code) return null;
  }
  if (src[end] === ';') end++;
  return { ch: String.fromCodePoint(code), end };
}

function parseHtml(src) {
  let text = '';
  const entities = [];
  const stack = [];
  const byteOffset = (i) => Buffer.byteLength(src.slice(0, i), 'utf8');
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === '&') {
      const ent = decodeHtmlEntity(src, i);
      if (ent) {
        text += ent.ch;
        i = ent.end;
        continue;
      }
    }
    if (c !== '<') {
      text += c;
      i++;
      continue;
    }
    const begin = i;
    i++;
    if (src[i] === '/') { // end tag
      i++;
      const nameStart = i;
      while (i < src.length && src[i] !== '>') i++;
      if (i >= src.length) throw new ParseError(`Unclosed end tag at byte offset ${byteOffset(begin)}`);
      const name = src.slice(nameStart, i).trim().toLowerCase();
      i++;
      if (!stack.length) throw new ParseError(`Unexpected end tag at byte offset ${byteOffset(begin)}`);
      const top = stack.pop();
      if (name !== top.tag) {
        throw new ParseError(`Unmatched end tag at byte offset ${byteOffset(begin)}, expected "</${top.tag}>", found "</${name}>"`);
      }
      const length = text.length - top.offset;
      if (length > 0 && top.entity) entities.push({ ...top.entity, offset: top.offset, length });
      continue;
    }
    const nameStart = i;
    while (i < src.length && !/[\s>/]/.test(src[i])) i++;
    const tag = src.slice(nameStart, i).toLowerCase();
    if (!Object.prototype.hasOwnProperty.call(HTML_TAGS, tag)) {
      throw new ParseError(`Unsupported start tag "${tag}" at byte offset ${byteOffset(begin)}`);
    }
    const attrs = {};
    for (;;) {
      while (i < src.length && /\s/.test(src[i])) i++;
      if (i >= src.length) throw new ParseError(`Unclosed start tag at byte offset ${byteOffset(begin)}`);
      if (src[i] === '>') { i++; break; }
      if (src[i] === '/' && src[i + 1] === '>') { i += 2; break; }
      const attrStart = i;
      while (i < src.length && !/[\s=>]/.test(src[i])) i++;
      const attr = src.slice(attrStart, i).toLowerCase();
      if (!attr) throw new ParseError(`Empty attribute name in the tag "${tag}" at byte offset ${byteOffset(begin)}`);
      while (i < src.length && /\s/.test(src[i])) i++;
      if (src[i] !== '=') { attrs[attr] = ''; continue; }
      i++;
      while (i < src.length && /\s/.test(src[i])) i++;
      let raw;
      if (src[i] === '"' || src[i] === "'") {
        const quote = src[i];
        const close = src.indexOf(quote, i + 1);
        if (close < 0) throw new ParseError(`Unclosed start tag at byte offset ${byteOffset(begin)}`);
        raw = src.slice(i + 1, close);
        i = close + 1;
      } else {
        const valStart = i;
        while (i < src.length && !/[\s>]/.test(src[i])) i++;
        raw = src.slice(valStart, i);
      }
      let value = '';
      for (let j = 0; j < raw.length;) {
        const ent = raw[j] === '&' ? decodeHtmlEntity(raw, j) : null;
        if (ent) { value += ent.ch; j = ent.end; } else { value += raw[j]; j++; }
      }
      attrs[attr] = value;
    }
    let entity = { type: HTML_TAGS[tag] };
    if (tag === 'span' && attrs.class !== 'tg-spoiler') {
      throw new ParseError(`Tag "span" must have class "tg-spoiler" at byte offset ${byteOffset(begin)}`);
    }
    if (tag === 'a') {
      entity = attrs.href ? { type: 'text_link', url: attrs.href } : null;
    } else if (tag === 'tg-emoji') {
      if (!attrs['emoji-id']) throw new ParseError(`Custom emoji identifier must be specified at byte offset ${byteOffset(begin)}`);
      entity = { type: 'custom_emoji', custom_emoji_id: attrs['emoji-id'] };
    } else if (tag === 'blockquote' && 'expandable' in attrs) {
      entity = { type: 'expandable_blockquote' };
    } else if (tag === 'code' && stack.length && stack[stack.length - 1].tag === 'pre'
      && /^language-/.test(attrs.class || '')) {
      // <pre><code class="language-x">: the language goes on the pre entity
      stack[stack.length - 1].entity.language = attrs.class.slice('language-'.length);
      entity = null;
    }
    stack.push({ tag, offset: text.length, entity });
  }
  if (stack.length) {
    throw new ParseError(`Can't find end tag corresponding to start tag "${stack[stack.length - 1].tag}"`);
  }
  entities.sort((a, b) => a.offset - b.offset || b.length - a.length);
  return { text, entities };
}

function trimFormatted(text, entities) {
  // Telegram strips leading and trailing whitespace and shifts the entities accordingly.
  const lead = text.length - text.replace(/^\s+/, '').length;
  const trimmed = text.trim();
  const out = [];
  for (const e of entities) {
    const start = Math.max(0, e.offset - lead);
    const end = Math.min(trimmed.length, e.offset + e.length - lead);
    if (end > start) out.push({ ...e, offset: start, length: end - start });
  }
  return { text: trimmed, entities: out };
}

// Bot's text + parse_mode + entities -> what Telegram stores (plain text + entities).
function formatText(params) {
  const raw = params.text === undefined || params.text === null ? '' : String(params.text);
  const mode = params.parse_mode ? String(params.parse_mode).toLowerCase() : '';
  let result = { text: raw, entities: Array.isArray(params.entities) ? params.entities : [] };
  if (mode === 'html') {
    try {
      result = parseHtml(raw);
    } catch (err) {
      if (!(err instanceof ParseError)) throw err;
      if (STRICT) throw badRequest(`can't parse entities: ${err.message}`);
      log(`invalid HTML accepted (EMULATOR_STRICT=0): ${err.message}`);
    }
  } else if (mode && !['markdown', 'markdownv2'].includes(mode)) {
    throw badRequest('unsupported parse_mode');
  }
  result = trimFormatted(result.text, result.entities);
  if (STRICT && !result.text) throw badRequest('message text is empty');
  if (STRICT && [...result.text].length > MAX_TEXT_LENGTH) throw badRequest('message is too long');
  return result;
}

// ---------------------------------------------------------------------------------------
// Bot API
// ---------------------------------------------------------------------------------------

const JSON_FIELDS = ['reply_markup', 'entities', 'caption_entities', 'reply_parameters',
  'link_preview_options', 'commands', 'scope', 'allowed_updates', 'menu_button', 'reaction',
  'media', 'results', 'message_ids'];

function decodeParams(req) {
  const params = { ...(req.query || {}), ...(req.body && typeof req.body === 'object' ? req.body : {}) };
  for (const key of JSON_FIELDS) {
    if (typeof params[key] === 'string') {
      try {
        params[key] = JSON.parse(params[key]);
      } catch (_err) {
        if (key === 'reply_markup') throw badRequest("can't parse reply keyboard markup JSON object");
        if (key === 'entities' || key === 'caption_entities') throw badRequest("can't parse entities JSON object");
        throw badRequest(`can't parse ${key} JSON object`);
      }
    }
  }
  return params;
}

const inlineMarkup = (markup) => (markup && typeof markup === 'object' && Array.isArray(markup.inline_keyboard) ? markup : undefined);

function requireChatId(params) {
  if (params.chat_id === undefined || params.chat_id === '') throw badRequest('chat_id is empty');
  if (!/^-?\d+$/.test(String(params.chat_id))) throw badRequest('chat not found');
  return Number(params.chat_id);
}

function requireMessageId(params, what = 'message_id') {
  const id = Number(params.message_id);
  if (!Number.isInteger(id) || id <= 0) throw badRequest(`${what} is invalid`);
  return id;
}

function replyTarget(token, chatId, params) {
  let reply = params.reply_parameters;
  if (!reply && params.reply_to_message_id !== undefined) {
    reply = { message_id: Number(params.reply_to_message_id), allow_sending_without_reply: params.allow_sending_without_reply };
  }
  if (!reply || reply.message_id === undefined) return undefined;
  const targetChat = reply.chat_id !== undefined ? reply.chat_id : chatId;
  const entry = findEntry(token, targetChat, reply.message_id);
  if (entry) return withoutReply(entry.message);
  const allow = reply.allow_sending_without_reply === true || reply.allow_sending_without_reply === 'true';
  if (STRICT && !allow) throw badRequest('message to be replied not found');
  return undefined;
}

function syncUpstreamBotMessage(messageId, fields) {
  const stored = server.storage.botMessages.find((u) => String(u.messageId) === String(messageId));
  if (stored) stored.message = { ...stored.message, ...fields };
}

const sameJson = (a, b) => JSON.stringify(a === undefined ? null : a) === JSON.stringify(b === undefined ? null : b);

const handlers = {
  getme: (token) => botUser(token),

  getupdates: (token, params, ctx) => longPoll(token, params, ctx),

  sendmessage: (token, params) => {
    const chatId = requireChatId(params);
    if (params.text === undefined) throw badRequest('message text is empty');
    const formatted = formatText(params);
    const replyTo = replyTarget(token, chatId, params);
    const upstream = server.addBotMessage({ ...params, chat_id: String(chatId) }, token);
    const entry = listFor(history, token);
    const message = {
      message_id: upstream.message_id,
      from: botUser(token),
      chat: chatFor(chatId),
      date: toSeconds(upstream.date),
      text: formatted.text,
    };
    if (formatted.entities.length) message.entities = formatted.entities;
    if (replyTo) message.reply_to_message = replyTo;
    if (inlineMarkup(params.reply_markup)) message.reply_markup = params.reply_markup;
    entry.push({
      kind: 'bot',
      chat_id: chatId,
      message_id: message.message_id,
      time_ms: Date.now(),
      message,
      sent: { text: params.text, parse_mode: params.parse_mode || null, reply_markup: params.reply_markup || null },
      edit_count: 0,
      deleted: false,
    });
    return message;
  },

  editmessagetext: (token, params) => editMessage(token, params, true),
  editmessagereplymarkup: (token, params) => editMessage(token, params, false),

  deletemessage: (token, params) => {
    const chatId = requireChatId(params);
    const id = requireMessageId(params);
    if (!deleteOne(token, chatId, id)) throw badRequest('message to delete not found');
    return true;
  },

  deletemessages: (token, params) => {
    const chatId = requireChatId(params);
    const ids = Array.isArray(params.message_ids) ? params.message_ids : [];
    if (!ids.length) throw badRequest('message identifiers are not specified');
    ids.forEach((id) => deleteOne(token, chatId, Number(id)));
    return true;
  },

  answercallbackquery: (token, params) => {
    const id = String(params.callback_query_id || '');
    if (STRICT && (knownCallbacks.get(id) !== token || answeredCallbacks.has(id))) {
      throw badRequest('query is too old and response timeout expired or query ID is invalid');
    }
    answeredCallbacks.add(id);
    return true;
  },

  setwebhook: (token, params) => {
    if (!params.url) {
      server.deleteWebhook(token);
      return true;
    }
    server.setWebhook({
      url: String(params.url),
      secret_token: params.secret_token ? String(params.secret_token) : undefined,
    }, token);
    if (Array.isArray(params.allowed_updates)) allowedUpdates.set(token, params.allowed_updates);
    if (truthy(params.drop_pending_updates)) dropPending(token);
    for (const p of [...pollers]) {
      if (p.token === token) p.fail(new ApiError(409, 'Conflict: terminated by setWebhook request'));
    }
    // Telegram pushes what is still pending to the new webhook.
    const pending = server.storage.userMessages.filter((u) => u.botToken === token && !u.isRead);
    pending.forEach((u) => { u.isRead = true; });
    (async () => { for (const u of pending) await deliverWebhook(u); })().catch((err) => log(`webhook flush failed: ${err}`));
    return true;
  },

  deletewebhook: (token, params) => {
    server.deleteWebhook(token);
    if (truthy(params.drop_pending_updates)) dropPending(token);
    return true;
  },

  getwebhookinfo: (token) => {
    const hook = server.webhooks[token];
    const pending = server.storage.userMessages.filter((u) => u.botToken === token && !u.isRead).length;
    return { url: hook ? hook.url : '', has_custom_certificate: false, pending_update_count: pending };
  },

  sendchataction: (token, params) => { requireChatId(params); return true; },
  setmessagereaction: (token, params) => { requireChatId(params); return true; },
  setmycommands: (token, params) => {
    settingsFor(token).commands[commandsKey(params)] = Array.isArray(params.commands) ? params.commands : [];
    return true;
  },
  getmycommands: (token, params) => settingsFor(token).commands[commandsKey(params)] || [],
  deletemycommands: (token, params) => { delete settingsFor(token).commands[commandsKey(params)]; return true; },
  setmydescription: (token, params) => { settingsFor(token).description = params.description || ''; return true; },
  getmydescription: (token) => ({ description: settingsFor(token).description }),
  setmyshortdescription: (token, params) => { settingsFor(token).short_description = params.short_description || ''; return true; },
  getmyshortdescription: (token) => ({ short_description: settingsFor(token).short_description }),
  setmyname: (token, params) => { settingsFor(token).name = params.name || ''; return true; },
  getmyname: (token) => ({ name: settingsFor(token).name || (identities.get(token) || DEFAULT_IDENTITY).first_name }),
  setchatmenubutton: (token, params) => { settingsFor(token).menu_button = params.menu_button || { type: 'default' }; return true; },
  getchatmenubutton: (token) => settingsFor(token).menu_button,
  close: () => true,
  logout: () => true,
};

const truthy = (v) => v === true || v === 'true' || v === 'True' || v === '1' || v === 1;
const commandsKey = (params) => JSON.stringify([params.scope || { type: 'default' }, params.language_code || '']);

function dropPending(token) {
  server.storage.userMessages.forEach((u) => { if (u.botToken === token) u.isRead = true; });
}

function deleteOne(token, chatId, id) {
  const entry = findEntry(token, chatId, id);
  if (!entry) return false;
  entry.deleted = true;
  server.deleteMessage(chatId, id); // keep upstream storage in sync
  bump(token);
  return true;
}

function editMessage(token, params, withText) {
  if (params.inline_message_id) throw badRequest('inline_message_id is not supported by telegram-test-api');
  const chatId = requireChatId(params);
  const id = requireMessageId(params);
  const entry = findEntry(token, chatId, id);
  if (!entry) throw badRequest('message to edit not found');
  if (entry.kind !== 'bot') throw badRequest("message can't be edited");
  const old = entry.message;
  const next = { ...old };
  let sent = { ...entry.sent };
  if (withText) {
    if (params.text === undefined) throw badRequest('message text is empty');
    const formatted = formatText(params);
    next.text = formatted.text;
    if (formatted.entities.length) next.entities = formatted.entities; else delete next.entities;
    sent = { ...sent, text: params.text, parse_mode: params.parse_mode || null };
  }
  // Like Telegram: an edit without reply_markup removes the inline keyboard.
  const markup = inlineMarkup(params.reply_markup);
  if (markup) next.reply_markup = markup; else delete next.reply_markup;
  sent.reply_markup = params.reply_markup || null;
  if (next.text === old.text && sameJson(next.entities, old.entities) && sameJson(next.reply_markup, old.reply_markup)) {
    throw badRequest('message is not modified: specified new message content and reply markup are '
      + 'exactly the same as a current content and reply markup of the message');
  }
  next.edit_date = nowSeconds();
  entry.message = next;
  entry.sent = sent;
  entry.edit_count += 1;
  syncUpstreamBotMessage(id, { text: sent.text, parse_mode: sent.parse_mode, reply_markup: markup });
  return next;
}

// getUpdates with real long polling and offset semantics: an update is confirmed (and never
// returned again) once getUpdates is called with a higher offset, as on Telegram.
function longPoll(token, params, ctx) {
  if (server.webhooks[token]) {
    throw new ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first");
  }
  const offset = Number(params.offset) || 0;
  const limit = Math.min(100, Math.max(1, Number(params.limit) || 100));
  const timeoutS = Math.min(MAX_LONG_POLL_S, Math.max(0, Number(params.timeout) || 0));
  if (Array.isArray(params.allowed_updates)) allowedUpdates.set(token, params.allowed_updates);
  // A second poller for the same token terminates the first one, as on Telegram.
  for (const p of [...pollers]) {
    if (p.token === token) p.fail(new ApiError(409, 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running'));
  }
  if (offset > 0) {
    server.storage.userMessages.forEach((u) => {
      if (u.botToken === token && u.updateId < offset) u.isRead = true;
    });
  }
  const collect = () => {
    const allowed = allowedUpdates.get(token);
    const out = [];
    for (const u of server.storage.userMessages) {
      if (u.botToken !== token || u.isRead) continue;
      const type = 'callbackQuery' in u ? 'callback_query' : 'message';
      if (allowed && allowed.length && !allowed.includes(type)) { u.isRead = true; continue; }
      out.push(TelegramServer.formatUpdate(u));
      if (out.length >= limit) break;
    }
    return out;
  };
  const ready = collect();
  if (ready.length || timeoutS === 0 || stopping) return ready;
  return new Promise((resolve, reject) => {
    const poller = {
      token,
      finish: () => {
        clearTimeout(timer);
        pollers.delete(poller);
      },
      wake: () => {
        const updates = collect();
        if (updates.length) { poller.finish(); resolve(updates); }
      },
      fail: (err) => { poller.finish(); reject(err); },
      flush: () => { poller.finish(); resolve(collect()); },
    };
    const timer = setTimeout(poller.flush, timeoutS * 1000);
    ctx.onAbort(() => { poller.finish(); resolve([]); });
    ctx.poller = poller;
    pollers.add(poller);
  });
}

function notifyPollers(token) {
  for (const p of [...pollers]) if (p.token === token) p.wake();
}

// Fault injection: the next `count` matching calls get `status` (after `delay_ms`, if any).
function takeFault(token, method) {
  const m = method.toLowerCase();
  const rule = faults.find((f) => f.remaining > 0 && (!f.token || f.token === token)
    && (!f.methods || f.methods.includes(m)));
  if (!rule) return null;
  rule.remaining -= 1;
  if (rule.remaining <= 0) faults = faults.filter((f) => f !== rule);
  return rule;
}

function faultError(rule) {
  const reason = http.STATUS_CODES[rule.status] || 'Error';
  const description = rule.description || `${reason} (injected fault)`;
  const parameters = rule.retry_after ? { retry_after: rule.retry_after } : undefined;
  return new ApiError(rule.status, description, parameters);
}

function sendApi(res, status, body) {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  res.status(status).json(body);
}

function sendApiError(res, err) {
  const body = { ok: false, error_code: err.status, description: err.description };
  if (err.parameters) body.parameters = err.parameters;
  sendApi(res, err.status, body);
}


async function botApi(req, res) {
  const { token, method } = req.params;
  const key = method.toLowerCase();
  const call = {
    seq: callSeq++,
    token,
    method,
    params: {},
    time_ms: Date.now(),
    status: null,
    duration_ms: null,
    error: null,
  };
  listFor(calls, token).push(call);
  let aborted = false;
  const abortCallbacks = [];
  res.on('close', () => {
    if (!res.writableFinished) {
      aborted = true;
      call.status = 'aborted';
      abortCallbacks.forEach((cb) => cb());
    }
    call.duration_ms = Date.now() - call.time_ms;
    bump(token);
  });
  const finish = (status, error) => {
    call.status = status;
    call.error = error || null;
    if (LOG_CALLS) log(`${method} -> ${status}${error ? ` ${error}` : ''}`);
  };
  try {
    call.params = decodeParams(req);
  } catch (err) {
    call.params = { ...(req.query || {}), ...(req.body || {}) };
    bump(token);
    finish(err.status, err.description);
    sendApiError(res, err);
    return;
  }
  bump(token);
  if (req.method !== 'GET' && req.method !== 'POST') {
    const err = badRequest(`HTTP method '${req.method}' is not allowed by the Bot API`);
    finish(400, err.description);
    sendApiError(res, err);
    return;
  }
  const ctx = { onAbort: (cb) => abortCallbacks.push(cb), poller: null };
  try {
    const rule = takeFault(token, method);
    if (rule && rule.delay_ms) {
      await delay(rule.delay_ms);
      if (aborted) return;
    }
    if (rule && rule.status) throw faultError(rule);
    const handler = Object.prototype.hasOwnProperty.call(handlers, key) ? handlers[key] : null;
    if (!handler) {
      log(`unsupported Bot API method: ${method}`);
      throw badRequest(`method '${method}' is not supported by telegram-test-api`);
    }
    const result = await handler(token, call.params, ctx);
    if (aborted) return;
    finish(200);
    sendApi(res, 200, { ok: true, result });
  } catch (err) {
    if (aborted) return;
    if (!(err instanceof ApiError)) {
      log(`internal error in ${method}: ${err && err.stack ? err.stack : err}`);
      err = new ApiError(500, `Internal Server Error: emulator failed in ${method}: ${err && err.message}`);
    }
    finish(err.status, err.description);
    sendApiError(res, err);
  }
}

// ---------------------------------------------------------------------------------------
// User side (the test plays the user)
// ---------------------------------------------------------------------------------------

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isId = (v) => v !== undefined && v !== null && v !== '' && /^-?\d+$/.test(String(v));

function clientError(res, description) {
  res.status(400).json({ ok: false, error_code: 400, description: `Bad Request: ${description}` });
}

function checkUser(from) {
  if (!isObject(from) || !isId(from.id)) return 'from.id (numeric) is required';
  return null;
}

function userMessageRoute(kind) {
  return async (req, res) => {
    const body = req.body;
    if (!isObject(body)) return clientError(res, 'JSON object body required');
    const token = body.botToken;
    if (!token || typeof token !== 'string') return clientError(res, 'botToken (string) is required');
    if (!isObject(body.chat) || !isId(body.chat.id)) return clientError(res, 'chat.id (numeric) is required');
    const userProblem = checkUser(body.from);
    if (userProblem) return clientError(res, userProblem);
    if (typeof body.text !== 'string' || !body.text) return clientError(res, 'text (non-empty string) is required');
    if (body.entities !== undefined && !Array.isArray(body.entities)) return clientError(res, 'entities must be an array');
    if (kind === 'command' && !(body.entities || []).some((e) => e && e.type === 'bot_command')) {
      return clientError(res, 'Command should have entities (a bot_command entity)');
    }
    const message = { ...body };
    delete message.botToken;
    delete message.reply_to_message_id;
    message.chat = { ...body.chat, id: Number(body.chat.id) };
    message.from = { is_bot: false, first_name: `User ${body.from.id}`, ...body.from, id: Number(body.from.id) };
    message.date = toSeconds(body.date);
    if (!message.entities || !message.entities.length) delete message.entities;
    if (body.reply_to_message_id !== undefined) {
      const target = findEntry(token, message.chat.id, body.reply_to_message_id);
      if (!target) return clientError(res, `message ${body.reply_to_message_id} to reply to not found in chat ${message.chat.id}`);
      message.reply_to_message = withoutReply(target.message);
    }
    rememberChat(message.chat);
    const update = {
      time: Date.now(), botToken: token, messageId: server.messageId++, isRead: false, message,
    };
    const delivery = server.addUserUpdate(update); // assigns update.updateId synchronously
    const formatted = TelegramServer.formatUpdate(update);
    listFor(history, token).push({
      kind: 'user',
      chat_id: message.chat.id,
      message_id: update.messageId,
      time_ms: update.time,
      message: formatted.message,
      sent: { text: message.text, parse_mode: null, reply_markup: null },
      edit_count: 0,
      deleted: false,
    });
    bump(token);
    const webhook = await delivery;
    const out = { ok: true, result: formatted };
    if (webhook) out.webhook = webhook;
    return res.json(out);
  };
}

async function sendCallbackRoute(req, res) {
  const body = req.body;
  if (!isObject(body)) return clientError(res, 'JSON object body required');
  const token = body.botToken;
  if (!token || typeof token !== 'string') return clientError(res, 'botToken (string) is required');
  const userProblem = checkUser(body.from);
  if (userProblem) return clientError(res, userProblem);
  if (typeof body.data !== 'string') return clientError(res, 'data (string) is required');
  const given = body.message;
  if (!isObject(given) || !isId(given.message_id)) return clientError(res, 'message.message_id is required');
  const chatId = isObject(given.chat) ? given.chat.id : given.chat_id;
  if (!isId(chatId)) return clientError(res, 'message.chat.id is required');
  // Prefer the message as the emulator knows it now (edits included).
  const stored = findEntry(token, chatId, given.message_id, ['bot']);
  let message;
  if (stored) {
    message = { ...stored.message };
  } else {
    message = { ...given, chat: isObject(given.chat) ? given.chat : chatFor(chatId), date: toSeconds(given.date) };
  }
  const from = { is_bot: false, first_name: `User ${body.from.id}`, ...body.from, id: Number(body.from.id) };
  const callbackQuery = { from, message, data: body.data };
  const update = {
    time: Date.now(), botToken: token, isRead: false, callbackQuery, callbackId: server.callbackId++,
  };
  knownCallbacks.set(String(update.callbackId), token);
  const delivery = server.addUserUpdate(update);
  const formatted = TelegramServer.formatUpdate(update);
  bump(token);
  const webhook = await delivery;
  const out = { ok: true, result: formatted };
  if (webhook) out.webhook = webhook;
  return res.json(out);
}

// ---------------------------------------------------------------------------------------
// Test control routes
// ---------------------------------------------------------------------------------------

function historyRoute(req, res) {
  const body = isObject(req.body) ? req.body : {};
  if (!body.token) return clientError(res, 'token is required');
  let list = listFor(history, body.token);
  if (body.chat_id !== undefined && body.chat_id !== null) list = list.filter((e) => String(e.chat_id) === String(body.chat_id));
  if (!body.include_deleted) list = list.filter((e) => !e.deleted);
  return res.json({ ok: true, result: list, version: versions.get(body.token) || 0 });
}

function callsRoute(req, res) {
  const body = isObject(req.body) ? req.body : {};
  let list = body.token ? listFor(calls, body.token) : [].concat(...calls.values());
  if (body.method) list = list.filter((c) => c.method.toLowerCase() === String(body.method).toLowerCase());
  if (body.since) list = list.filter((c) => c.seq > Number(body.since));
  list = list.slice().sort((a, b) => a.seq - b.seq);
  if (body.clear) {
    if (body.token) calls.set(body.token, []); else calls.clear();
  }
  return res.json({ ok: true, result: list, version: body.token ? versions.get(body.token) || 0 : null });
}

function waitRoute(req, res) {
  const body = isObject(req.body) ? req.body : {};
  if (!body.token) return clientError(res, 'token is required');
  const since = Number(body.version) || 0;
  const timeoutMs = Math.min(MAX_WAIT_MS, Math.max(0, Number(body.timeout_ms) || 0));
  const current = () => versions.get(body.token) || 0;
  if (current() > since || timeoutMs === 0 || stopping) return res.json({ ok: true, version: current() });
  const w = {
    token: body.token,
    done: () => {
      clearTimeout(timer);
      waiters.delete(w);
      if (!res.writableEnded) res.json({ ok: true, version: current() });
    },
  };
  const timer = setTimeout(w.done, timeoutMs);
  res.on('close', () => { clearTimeout(timer); waiters.delete(w); });
  waiters.add(w);
  return undefined;
}

function faultsRoute(req, res) {
  if (req.method === 'GET') return res.json({ ok: true, result: faults });
  const body = isObject(req.body) ? req.body : {};
  if (body.clear) {
    faults = body.token ? faults.filter((f) => f.token !== body.token) : [];
    return res.json({ ok: true, result: faults });
  }
  const status = body.status === undefined || body.status === null ? null : Number(body.status);
  const delayMs = Number(body.delay_ms) || 0;
  if (status === null && !delayMs) return clientError(res, 'status or delay_ms is required');
  if (status !== null && !(status >= 300 && status <= 599)) return clientError(res, 'status must be an HTTP error status (300-599)');
  if (body.methods !== undefined && !Array.isArray(body.methods)) return clientError(res, 'methods must be a list');
  const count = body.count === undefined ? 1 : Number(body.count);
  if (!Number.isInteger(count) || count < 1) return clientError(res, 'count must be a positive integer');
  const rule = {
    id: faultSeq++,
    token: body.token || null,
    status,
    delay_ms: delayMs,
    methods: body.methods ? body.methods.map((m) => String(m).toLowerCase()) : null,
    remaining: count,
    description: body.description || null,
    retry_after: body.retry_after || null,
  };
  faults.push(rule);
  // interrupt: answer matching getUpdates long polls that are already waiting.
  if (body.interrupt && status !== null && (!rule.methods || rule.methods.includes('getupdates'))) {
    for (const p of [...pollers]) {
      if (rule.remaining > 0 && (!rule.token || rule.token === p.token)) {
        rule.remaining -= 1;
        p.fail(faultError(rule));
      }
    }
    if (rule.remaining <= 0) faults = faults.filter((f) => f !== rule);
  }
  return res.json({ ok: true, result: rule });
}

function botIdentityRoute(req, res) {
  const body = isObject(req.body) ? req.body : {};
  if (!body.token) return clientError(res, 'token is required');
  const current = identities.get(body.token) || DEFAULT_IDENTITY;
  identities.set(body.token, {
    username: body.username || current.username,
    first_name: body.first_name || current.first_name,
  });
  return res.json({ ok: true, result: botUser(body.token) });
}

// ---------------------------------------------------------------------------------------
// HTTP wiring: our routes first, upstream's app (client /getUpdates, /getUpdatesHistory) last
// ---------------------------------------------------------------------------------------

const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '10mb' }));
app.use(express.urlencoded({ extended: true, limit: '10mb' }));

const safe = (fn) => (req, res, next) => Promise.resolve(fn(req, res, next)).catch((err) => {
  log(`error in ${req.method} ${req.path}: ${err && err.stack ? err.stack : err}`);
  if (!res.headersSent) {
    const status = err instanceof ApiError ? err.status : 400;
    res.status(status).json({ ok: false, error_code: status, description: err.description || `Bad Request: ${err.message}` });
  }
});

app.all('/bot:token/:method', safe(botApi));
app.post('/sendMessage', safe(userMessageRoute('message')));
app.post('/sendCommand', safe(userMessageRoute('command')));
app.post('/sendCallback', safe(sendCallbackRoute));
app.post('/_history', safe(historyRoute));
app.post('/_calls', safe(callsRoute));
app.post('/_wait', safe(waitRoute));
app.all('/_faults', safe(faultsRoute));
app.post('/_bot', safe(botIdentityRoute));
app.get('/_health', (_req, res) => res.json({ ok: true, version: pkgVersion, strict: STRICT }));
app.use((req, res, next) => {
  // Upstream client routes read req.body.token etc.; an empty body must not crash them.
  if (!isObject(req.body)) req.body = {};
  next();
});
app.post('/getUpdates', (req, res, next) => (req.body.token ? next() : clientError(res, 'token is required')));
app.post('/getUpdatesHistory', (req, res, next) => (req.body.token ? next() : clientError(res, 'token is required')));
app.post(['/getUpdates', '/getUpdatesHistory'], server.webServer);
app.use((req, res) => {
  const hint = req.path.startsWith('/bot') ? ' (base_url must be http://HOST:PORT/bot, no trailing slash)' : '';
  res.status(404).json({ ok: false, error_code: 404, description: `Not Found: no route ${req.method} ${req.path}${hint}` });
});
// eslint-disable-next-line no-unused-vars
app.use((err, req, res, _next) => {
  const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 400;
  const what = err.type === 'entity.parse.failed' ? "can't parse JSON body" : err.message;
  if (!res.headersSent) res.status(status).json({ ok: false, error_code: status, description: `Bad Request: ${what}` });
});

const httpServer = http.createServer(app);
// Never close idle keep-alive connections from our side: that races with clients (PTB's
// httpx pool) reusing them and shows up as random "Server disconnected" NetworkErrors.
httpServer.keepAliveTimeout = 0;

httpServer.listen(PORT, HOST, () => {
  const { port } = httpServer.address();
  server.config.port = port;
  server.config.host = HOST;
  server.config.apiURL = `${server.config.protocol}://${HOST}:${port}`;
  server.server = httpServer;
  server.started = true;
  server.cleanUpDaemon();
  if (server.cleanUpDaemonInterval && server.cleanUpDaemonInterval.unref) server.cleanUpDaemonInterval.unref();
  process.stdout.write(`${JSON.stringify({ port, pid: process.pid })}\n`);
});
httpServer.on('error', (err) => {
  log(`cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});

function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  if (LOG_CALLS) log(`stopping (${reason})`);
  setTimeout(() => process.exit(0), 1000).unref();
  for (const p of [...pollers]) p.flush();
  for (const w of [...waiters]) w.done();
  if (server.cleanUpDaemonInterval) clearInterval(server.cleanUpDaemonInterval);
  httpServer.close(() => process.exit(0));
  setImmediate(() => httpServer.closeAllConnections());
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
if (process.argv.includes('--exit-with-parent')) {
  // The harness holds our stdin open; when it dies (even by SIGKILL) we go too.
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();
}
