-- Protocol conformance of tocsin's milter, driven by miltertest (OpenDKIM's libmilter test
-- tool, an independent MTA side). Run: miltertest -D port=PORT -s milter-conformance.lua
-- against a tocsin whose [email.milter] policy holds email.exposed_recipients.

local function check(cond, what)
  if not cond then
    mt.echo("milter conformance FAILED: " .. what)
    error(what)
  end
end

local function session()
  local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
  check(conn ~= nil, "connect")
  check(mt.negotiate(conn, nil, nil, nil) == nil, "negotiate")
  check(mt.test_action(conn, SMFIF_QUARANTINE), "quarantine action requested")
  check(mt.test_option(conn, SMFIP_NOBODY), "the body is not asked for")
  check(mt.conninfo(conn, "mailer.exchange.example", "127.0.0.1") == nil, "conninfo")
  check(mt.helo(conn, "mailer.exchange.example") == nil, "helo")
  return conn
end

local function message(conn, rcpts, to, subject)
  check(mt.macro(conn, SMFIC_MAIL, "i", "4FQ1mX0abcz") == nil, "macro")
  check(mt.mailfrom(conn, "<statements@exchange.example>") == nil, "mailfrom")
  for _, r in ipairs(rcpts) do
    check(mt.rcptto(conn, "<" .. r .. ">") == nil, "rcptto")
  end
  check(mt.header(conn, "From", "Example <statements@exchange.example>") == nil, "header")
  check(mt.header(conn, "To", to) == nil, "header")
  check(mt.header(conn, "Subject", subject) == nil, "header")
  check(mt.eoh(conn) == nil, "eoh")
  check(mt.eom(conn) == nil, "eom")
end

-- A harmless message is accepted and not quarantined.
local conn = session()
message(conn, { "jane@partner.example" }, "Jane <jane@partner.example>", "Minutes")
check(mt.getreply(conn) == SMFIR_ACCEPT, "harmless message accepted")
check(not mt.eom_check(conn, MT_QUARANTINE), "harmless message not quarantined")

-- A transaction aborted half-way leaves nothing behind; the next message on the same
-- connection is judged on its own.
check(mt.mailfrom(conn, "<statements@exchange.example>") == nil, "mailfrom")
check(mt.rcptto(conn, "<x@cust0.example>") == nil, "rcptto")
check(mt.abort(conn) == nil, "abort")

-- A leak: thirty customers of three domains in To:, folded over two lines.
local to, rcpts = {}, {}
for i = 0, 29 do
  local a = "customer" .. i .. "@cust" .. (i % 3) .. ".example"
  table.insert(to, a)
  table.insert(rcpts, a)
end
local folded = table.concat(to, ", ", 1, 15) .. ",\n\t" .. table.concat(to, ", ", 16, 30)
message(conn, rcpts, folded, "Your statement")
check(mt.getreply(conn) == SMFIR_ACCEPT, "held message accepted into the hold queue")
check(mt.eom_check(conn, MT_QUARANTINE), "the leak is quarantined")
check(mt.disconnect(conn) == nil, "disconnect")
mt.echo("milter conformance: ok")
