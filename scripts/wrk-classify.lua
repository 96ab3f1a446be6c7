-- wrk script: POST one image file to the classify endpoint.
--   WRK_IMAGE=img.png wrk -t2 -c64 -d20s --latency -s scripts/wrk-classify.lua http://127.0.0.1:8080/v1/classify
-- wrk reports any answer other than 2xx/3xx as "Non-2xx or 3xx responses".
local path = os.getenv("WRK_IMAGE") or error("set WRK_IMAGE to an image file")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/png"
