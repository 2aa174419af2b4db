--[[
sender-fp-release: put a signed "report this rejection" link into Rspamd's SMTP reject text
and push the rejected message to the release service, so a sender whose legitimate mail was
rejected can ask for it to be released.

Install as /etc/rspamd/plugins.d/sender_fp_release.lua; settings in
/etc/rspamd/local.d/sender_fp_release.conf (see docs/rspamd/README.md).

Link contract (the service's DESIGN.md section 2.1), parameters in this order:
  <public_url>/report?n=<node>&m=<message id>&t=<unix seconds>&s=<signature>
  s = lowercase hex HMAC-SHA256(link_key, "v1:" .. n .. ":" .. m .. ":" .. t)
  m = first 32 lowercase hex characters of SHA-256 of the raw message as Rspamd holds it
      (task:get_content()); these are the bytes pushed, so the service recomputes m from
      the pushed body and a repeated push of the same message is the same m.
Pinned test vector (tests/mta/test_rspamd_gateway.py checks it against the service):
  key = "example-link-key-0123456789", n = "mx3", m = "0123456789abcdef0123456789abcdef",
  t = "1767225600", s = "8bac9984a8e74ca520f4d77d82b1a0bf520a03b3bdb2bc51f217cc2c60fc9eb4"

Why this rule pushes the message itself instead of using metadata_exporter's http pusher:
the exporter's `defer` sets a 'soft reject' pre-result at normal priority, and Rspamd keeps
the first pre-result of the highest priority. A reject that is itself a pre-result (GTUBE at
critical priority, force_actions, multimap, antivirus...) would therefore win over the
defer: a message whose push failed would be rejected with a link to a copy that does not
exist. Here the order is explicit: a soft reject goes in first, above every stock priority,
and only a stored copy (HTTP 200) replaces it with the reject carrying the link. A push
that fails, times out, or never answers before the task ends leaves the soft reject: the
sending server retries later and nothing is lost. The request is the one metadata_exporter
sends with `meta_headers = true` (raw message body, Basic auth, X-Rspamd-* headers).
]]--

if confighelp then
  return
end

local N = 'sender_fp_release'
local rspamd_logger = require "rspamd_logger"
local rspamd_http = require "rspamd_http"
local rspamd_cryptobox_hash = require "rspamd_cryptobox_hash"
local rspamd_util = require "rspamd_util"
local lua_util = require "lua_util"
local ucl = require "ucl"

-- Above Rspamd's own pre-result priorities (low 0 .. critical 3): the push outcome decides.
local PRIORITY_DEFER = 20
local PRIORITY_REJECT = 21
-- The recipients' header stays within the 64 kB a header line that docs/deploy's nginx and
-- gunicorn take (about 1000 ordinary addresses).
local MAX_RCPT_HEADER = 60000

local settings = {
  node = nil,            -- the node name the service knows ([a-z0-9-]+)
  public_url = nil,      -- the service's public base URL, e.g. https://release.example.com
  link_key = nil,        -- shared link key (one of the service's links.keys)
  push_password = nil,   -- the node's push password on the service
  push_url = nil,        -- default: <public_url>/gateway/v1/rspamd/<node>
  max_size = 26214400,   -- bytes; larger messages get a plain reject (the service answers 413)
  timeout = 10.0,        -- seconds for the push
  reject_message = 'Message rejected as spam. If it is legitimate, report it:',
  defer_message = 'Message held for review, please try again later',
  symbol = 'SENDER_FP_RELEASE',
}

local function hex_sha256(data)
  return rspamd_cryptobox_hash.create_specific('sha256', data):hex()
end

--- The report link's message id: first 32 hex characters of SHA-256 of the raw message.
local function message_id(content)
  return string.sub(hex_sha256(content), 1, 32)
end

--- Lowercase hex HMAC-SHA256 over "v1:<node>:<message id>:<time>" (DESIGN.md 2.1).
local function sign(key, node, mid, issued_at)
  local data = string.format('v1:%s:%s:%d', node, mid, issued_at)
  return rspamd_cryptobox_hash.create_specific_keyed(key, 'sha256', data):hex()
end

local function report_link(mid, issued_at)
  return string.format('%s/report?n=%s&m=%s&t=%d&s=%s', settings.public_url, settings.node,
      mid, issued_at, sign(settings.link_key, settings.node, mid, issued_at))
end

--- A header value that cannot end the header: the subject, the Message-ID and the symbols'
--- options come from the message, and a decoded line break would let a spammer add headers
--- (recipients) to the push. Control characters become spaces. Informative values are cut
--- at `limit` bytes, on a character boundary (a cut UTF-8 character is not text).
local function header_value(value, limit)
  local text = string.gsub(tostring(value), '%c', ' ')
  if limit and #text > limit then
    local cut = limit
    while cut > 0 and string.byte(text, cut + 1) and string.byte(text, cut + 1) >= 0x80
        and string.byte(text, cut + 1) < 0xC0 do
      cut = cut - 1 -- the next byte continues a character: end before that character
    end
    text = string.sub(text, 1, cut)
  end
  return text
end

--- An envelope address the service can give back to Postfix exactly as it is: one "@", no
--- quotes, spaces, commas, brackets or other characters an SMTP client would parse as
--- another address. Rspamd shows a quoted local part unquoted and a UTF-8 one not at all.
local function plain_address(addr)
  return type(addr) == 'string' and string.match(addr, '^[^%s%c<>"(),:;%[%]\\@]+@[^%s%c<>"(),:;%[%]\\@]+$') ~= nil
end

--- The envelope as the service will re-inject it, or nil when Rspamd cannot say it exactly
--- (an SMTPUTF8 or quoted address): such a message gets the plain reject, never a push the
--- service would refuse (which would defer it again at every retry of the sender).
local function envelope(task)
  local from = task:get_from('smtp')
  local sender = from and from[1] and from[1].addr
  if sender == nil or (sender ~= '' and not plain_address(sender)) then
    return nil, 'the envelope sender'
  end
  local rcpts = {}
  for _, a in ipairs(task:get_recipients('smtp') or {}) do
    if not plain_address(a.addr) then
      return nil, 'a recipient'
    end
    table.insert(rcpts, a.addr)
  end
  if #rcpts == 0 then
    return nil, 'the recipients'
  end
  if #ucl.to_format(rcpts, 'json-compact') > MAX_RCPT_HEADER then
    return nil, 'the recipients' -- more than the service's proxies take in one header
  end
  return { sender = sender, rcpts = rcpts }
end

--- The X-Rspamd-* headers metadata_exporter sends with meta_headers = true (same names).
local function meta_headers(task, env)
  local h = {}
  local ip = task:get_from_ip()
  h['X-Rspamd-ip'] = (ip and ip:is_valid()) and tostring(ip) or 'unknown'
  h['X-Rspamd-user'] = task:get_user() or 'unknown'
  h['X-Rspamd-qid'] = task:get_queue_id() or 'unknown'
  h['X-Rspamd-subject'] = task:get_subject() or 'unknown'
  h['X-Rspamd-action'] = task:get_metric_action()
  h['X-Rspamd-rspamd_server'] = rspamd_util.get_hostname()
  h['X-Rspamd-score'] = string.format('%.2f', task:get_metric_score()[1])
  h['X-Rspamd-rcpt'] = ucl.to_format(env.rcpts, 'json-compact')
  h['X-Rspamd-from'] = env.sender
  local symbols = {}
  for _, s in ipairs(task:get_symbols_all() or {}) do
    table.insert(symbols, { name = s.name, score = s.score, options = s.options })
  end
  h['X-Rspamd-symbols'] = ucl.to_format(symbols, 'json-compact')
  h['X-Rspamd-scan_time'] = tostring(math.floor(task:get_scan_time() * 1000))
  h['X-Rspamd-message_id'] = tostring(task:get_message_id() or 'unknown')
  for name, value in pairs(h) do
    -- The envelope whole (it is checked above; 1000 recipients are ~40 kB), the rest bounded.
    local envelope_header = name == 'X-Rspamd-rcpt' or name == 'X-Rspamd-from'
    h[name] = header_value(value, (not envelope_header) and 2000 or nil)
  end
  return h
end

local function rejected(task)
  if task:get_metric_action() ~= 'reject' then
    return
  end
  if task:get_user() then
    -- Mail your own users submitted (SMTP AUTH) goes out: its sender is right there to fix it,
    -- and a release would relay it to the outside. Plain reject.
    return
  end
  local content = task:get_content()
  if content:len() > settings.max_size then
    -- The service would answer 413: no link for a copy that cannot be kept.
    rspamd_logger.infox(task, 'message of %s bytes is over max_size %s: plain reject, no link',
        content:len(), settings.max_size)
    return
  end
  local env, unreadable = envelope(task)
  if not env then
    rspamd_logger.infox(task, 'cannot push %s as the service takes it (an SMTPUTF8 or quoted '
        .. 'address, or too many): plain reject, no link', unreadable)
    return
  end
  local mid = message_id(content)
  local link = report_link(mid, math.floor(rspamd_util.get_time()))
  local headers = meta_headers(task, env) -- before our own pre-results, so they show the reject

  -- Fail safe first: if the push never succeeds, the sender's server retries later.
  task:set_pre_result{action = 'soft reject', message = settings.defer_message, module = N,
                      priority = PRIORITY_DEFER}

  local function pushed(err, code)
    if err then
      rspamd_logger.errx(task, 'push of %s to %s failed: %s; deferring', mid, settings.push_url, err)
    elseif code ~= 200 then
      rspamd_logger.errx(task, 'push of %s to %s answered HTTP %s; deferring', mid, settings.push_url, code)
    else
      task:insert_result(settings.symbol, 1.0, mid)
      task:set_pre_result{action = 'reject', message = settings.reject_message .. ' ' .. link,
                          module = N, priority = PRIORITY_REJECT}
    end
  end

  local ok = rspamd_http.request({
    task = task,
    url = settings.push_url,
    user = settings.node,
    password = settings.push_password,
    body = content,
    mime_type = 'text/plain',
    headers = headers,
    timeout = settings.timeout,
    callback = pushed,
  })
  if not ok then
    rspamd_logger.errx(task, 'cannot start the push of %s to %s; deferring', mid, settings.push_url)
  end
end

local function configure()
  local opts = rspamd_config:get_all_opt(N)
  if not opts then
    return false
  end
  settings = lua_util.override_defaults(settings, opts)
  local missing = {}
  for _, k in ipairs({ 'node', 'public_url', 'link_key', 'push_password' }) do
    if type(settings[k]) ~= 'string' or settings[k] == '' then
      table.insert(missing, k)
    end
  end
  if #missing > 0 then
    rspamd_logger.errx(rspamd_config, '%s: missing settings %s; module disabled', N, table.concat(missing, ', '))
    return false
  end
  for _, k in ipairs({ 'link_key', 'push_password' }) do
    if string.find(settings[k], 'CHANGE-ME', 1, true) then
      -- An unedited sample would push every reject, get 401 and defer all of them.
      rspamd_logger.errx(rspamd_config, '%s: %s is still the sample value; module disabled', N, k)
      return false
    end
  end
  if not string.match(settings.node, '^[a-z0-9-]+$') or #settings.node > 63 then
    rspamd_logger.errx(rspamd_config, '%s: node %s is not [a-z0-9-]{1,63}; module disabled', N, settings.node)
    return false
  end
  settings.public_url = string.gsub(settings.public_url, '/+$', '')
  if not settings.push_url or settings.push_url == '' then
    settings.push_url = settings.public_url .. '/gateway/v1/rspamd/' .. settings.node
  end
  settings.max_size = tonumber(settings.max_size)
  settings.timeout = tonumber(settings.timeout)
  -- One line of SMTP reply text: no control characters may reach the SMTP dialogue.
  for _, k in ipairs({ 'reject_message', 'defer_message' }) do
    settings[k] = string.gsub(settings[k], '%c', ' ')
  end
  -- Postfix passes a longer milter reply on as it is, but RFC 5321 allows 512 octets per
  -- reply line (CRLF included) and some clients cut there, which would break the link.
  local reply = '554 5.7.1 ' .. settings.reject_message .. ' ' .. report_link(string.rep('0', 32), 9999999999)
  if #reply > 510 then
    rspamd_logger.errx(rspamd_config, '%s: the reject line would be %s octets, over SMTP\'s 512: '
        .. 'shorten reject_message or public_url; module disabled', N, #reply)
    return false
  end
  return true
end

if configure() then
  rspamd_config:register_symbol({
    name = settings.symbol,
    type = 'postfilter',
    callback = rejected,
    -- Runs when a pre-result (a multimap action, antivirus...) or the score decided the
    -- reject. (GTUBE is different: Rspamd flags that task "skip" and runs no rule at all.)
    flags = 'empty,ignore_passthrough',
    priority = lua_util.symbols_priorities.low,
    score = 0.0,
    group = 'sender_fp_release',
    description = 'Rejected message pushed to the release service; report link in the reject text',
  })
  rspamd_logger.infox(rspamd_config, '%s: node %s, pushing to %s', N, settings.node, settings.push_url)
end

-- For tests and `rspamadm lua`: the pure functions of the link contract.
return { message_id = message_id, sign = sign }
