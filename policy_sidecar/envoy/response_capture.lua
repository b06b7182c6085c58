-- Observes every response body without holding it back (docs/envoy.md, "Usage capture").
-- Keeps the first HEAD and the last TAIL bytes, the chunk and byte counts and the time of
-- the first byte, as dynamic metadata for the access log line the sidecar reads. Saved
-- every EVERY chunks too, so a stream the client cuts still leaves what it delivered.
local HEAD, TAIL, EVERY = 2048, 4096, 16
local NS = "policy_sidecar.response"

local function save(handle, head, tail, chunks, bytes, first, ended)
  local meta = handle:streamInfo():dynamicMetadata()
  -- A body the tail holds whole (most JSON answers) is logged once: no head.
  if bytes > TAIL then meta:set(NS, "h", handle:base64Escape(head)) end
  meta:set(NS, "t", handle:base64Escape(tail))
  meta:set(NS, "n", chunks)
  meta:set(NS, "b", bytes)
  if first ~= nil then meta:set(NS, "f", first) end
  if ended then meta:set(NS, "e", true) end
end

function envoy_on_response(handle)
  local head, tail, chunks, bytes, first = "", "", 0, 0, nil
  for chunk in handle:bodyChunks() do
    local n = chunk:length()
    if n > 0 then
      if first == nil then first = handle:timestamp() end
      if bytes < HEAD then head = head .. chunk:getBytes(0, math.min(n, HEAD - bytes)) end
      local k = math.min(n, TAIL)
      tail = tail .. chunk:getBytes(n - k, k)
      if #tail > TAIL then tail = string.sub(tail, -TAIL) end
      bytes = bytes + n
      chunks = chunks + 1
      if chunks % EVERY == 0 then save(handle, head, tail, chunks, bytes, first, false) end
    end
  end
  save(handle, head, tail, chunks, bytes, first, true)
end
