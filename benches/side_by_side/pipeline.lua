-- wrk script: each write carries DEPTH pipelined GETs of "/" (the first script argument,
-- 1 by default). README, "Where a request's CPU goes": "Not built: pipelining requests
-- to the origin".
--   wrk -t1 -c64 -d3s -s benches/side_by_side/pipeline.lua http://127.0.0.1:PORT/ -- 16
init = function(args)
    local depth = tonumber(args[1]) or 1
    local reqs = {}
    for i = 1, depth do
        reqs[i] = wrk.format(nil, "/")
    end
    pipelined = table.concat(reqs)
end

request = function()
    return pipelined
end
