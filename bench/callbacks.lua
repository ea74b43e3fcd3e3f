-- wrk script: POST the sample callback. DISTINCT=1 gives every request a task id of its own
-- (thread id + counter); otherwise every request repeats one task (a duplicate storm).
local template = [[{"code":200,"msg":"All generated successfully.","data":{"callbackType":"complete","task_id":"%s","data":[{"error_message":"","status":"complete","title":"Starry Night Dreams","text":"[Verse]\nMoonlight spreads across the windowsill\nStars dance, never standing still\nNight breeze weaves dreams with gentle skill\nLeaving all worries on the hill\n\n[Chorus]\nIn starry dreams we find tomorrow\nBreak free from ordinary sorrow"}]}}]]
local threads = {}
local counter = 0
local distinct = os.getenv("DISTINCT") == "1"
local run = os.getenv("RUN") or "run"

function setup(thread)
  thread:set("id", #threads)  -- a global in the thread's own Lua state
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local task = distinct and string.format("bench-%s-%d-%d", run, id, counter) or ("bench-dup-" .. run)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, string.format(template, task))
end
