-- wrk script shared by the accept benchmarks: counts only the answers that
-- mean "accepted" (BENCH_STATUS, and a body starting with BENCH_PREFIX if set),
-- and prints the totals and latency percentiles as BENCH key=value lines.
--   BENCH_METHOD  GET or POST (default GET)
--   BENCH_BODY    request body (POST)
--   BENCH_KEY     Bearer key (sent when set)
--   BENCH_STATUS  the accepted status (201 for Amivono, 202 for Kannel)
--   BENCH_PREFIX  body prefix that must start the answer ("0: Accepted" for Kannel)

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok = 0
   bad = 0
   expected = tonumber(os.getenv("BENCH_STATUS") or "200")
   prefix = os.getenv("BENCH_PREFIX") or ""
   wrk.method = os.getenv("BENCH_METHOD") or "GET"
   local body = os.getenv("BENCH_BODY")
   if body and body ~= "" then
      wrk.body = body
      wrk.headers["Content-Type"] = "application/json"
   end
   local key = os.getenv("BENCH_KEY")
   if key and key ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. key
   end
end

function response(status, headers, body)
   if status == expected and (prefix == "" or string.sub(body, 1, #prefix) == prefix) then
      ok = ok + 1
   else
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local o, b = 0, 0
   for _, t in ipairs(threads) do
      o = o + t:get("ok")
      b = b + t:get("bad")
   end
   io.write(string.format("BENCH ok=%d\nBENCH bad=%d\nBENCH duration_us=%d\n", o, b,
                          summary.duration))
   for _, p in ipairs({50, 90, 99}) do
      io.write(string.format("BENCH p%d_us=%d\n", p, latency:percentile(p)))
   end
end
