-- Counts the gRPC messages of one stream in each direction, for Istio's
-- istio_request_messages_total and istio_response_messages_total.
--
-- A gRPC message is a 5-byte prefix (compressed flag, 4-byte big-endian
-- length) followed by that many bytes. Body chunks are read as they pass
-- (bodyChunks does not buffer the stream), and the counts go into the
-- request's dynamic metadata under pilotfish.grpc, where the stats access
-- logger reads them when the stream ends. The filter only runs for requests
-- whose content-type is application/grpc (its matcher skips the others); it
-- sits early in the chain so that local replies pass back through it.

local NAMESPACE = "pilotfish.grpc"

local function count_messages(chunks)
  local messages, remaining, prefix = 0, 0, ""
  for chunk in chunks do
    local data = chunk:getBytes(0, chunk:length())
    local i, size = 1, #data
    while i <= size do
      if remaining > 0 then
        local take = math.min(remaining, size - i + 1)
        remaining = remaining - take
        i = i + take
      else
        local want = 5 - #prefix
        prefix = prefix .. data:sub(i, i + want - 1)
        i = i + want
        if #prefix == 5 then
          messages = messages + 1
          remaining = ((prefix:byte(2) * 256 + prefix:byte(3)) * 256 + prefix:byte(4)) * 256
            + prefix:byte(5)
          prefix = ""
        end
      end
    end
  end
  return messages
end

function envoy_on_request(handle)
  -- Zero first: a stream that ends early (a local reply, a reset) still has
  -- numbers for the stats logger.
  -- (Envoy's handles do not survive a yield: each set asks for the metadata
  -- anew, and reading the body yields.)
  local metadata = handle:streamInfo():dynamicMetadata()
  metadata:set(NAMESPACE, "request_messages", "0")
  metadata:set(NAMESPACE, "response_messages", "0")
  local count = count_messages(handle:bodyChunks())
  handle:streamInfo():dynamicMetadata():set(NAMESPACE, "request_messages", tostring(count))
end

function envoy_on_response(handle)
  local count = count_messages(handle:bodyChunks())
  handle:streamInfo():dynamicMetadata():set(NAMESPACE, "response_messages", tostring(count))
end
