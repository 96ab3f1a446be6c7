-- wrk script: POST one image file to the classify endpoint.
--   wrk -t2 -c64 -d20s --latency -s scripts/wrk-classify.lua http://127.0.0.1:8080/v1/classify
-- The image path comes from the environment variable WRK_IMAGE.
local path = os.getenv("WRK_IMAGE") or error("set WRK_IMAGE to an image file")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/png"

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  for status, n in pairs(statuses) do
    io.write(string.format("status %d: %d responses\n", status, n))
  end
end
