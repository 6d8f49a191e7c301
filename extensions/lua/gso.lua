-- gso.lua: an ipft Lua extension (scripting API version 1) showing how the
-- kernel segments each traced skb: its length and, from skb_shared_info,
-- gso_size, gso_segs and the gso_type bits (SKB_GSO_*).
--
-- The BPF half is extensions/gso.bpf.c; its object is read from beside this
-- script, so build it there first:
--
--   clang -target bpf -O2 -g -I/usr/include/$(gcc -print-multiarch) \
--     -c extensions/gso.bpf.c -o extensions/lua/gso.bpf.o
--   ipft -m 0xdeadbeef -s extensions/lua/gso.lua
api_version = 1

-- This file's directory, from the chunk name ipft gives it ("@path").
local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function read_object(path)
  local f, why = io.open(path, "rb")
  if not f then
    error("cannot read the BPF object (build it as the top of this file says): " .. why)
  end
  local bytes = f:read("a")
  f:close()
  return bytes
end

program = read_object(dir .. "/gso.bpf.o")

-- gso_type bits, named after the kernel's SKB_GSO_* as gso.bpf.c names
-- them (Linux 6.18 moved SKB_GSO_TCP_FIXEDID from bit 3 to bit 30, named
-- tcp_fixedid_outer here, beside the new inner bit 31).
local GSO_TYPE_BITS = {
  [0] = "tcpv4", "dodgy", "tcp_ecn", "tcp_fixedid", "tcpv6", "fcoe", "gre",
  "gre_csum", "ipxip4", "ipxip6", "udp_tunnel", "udp_tunnel_csum", "partial",
  "tunnel_remcsum", "sctp", "esp", "udp", "udp_l4", "fraglist", "tcp_accecn",
  [30] = "tcp_fixedid_outer", [31] = "tcp_fixedid_inner",
}

-- "tcpv4|tcpv6", unnamed bits in hex, "none" for 0.
local function gso_type_names(bits)
  local names = {}
  for bit = 0, 31 do
    local mask = 1 << bit
    if bits & mask ~= 0 and GSO_TYPE_BITS[bit] then
      names[#names + 1] = GSO_TYPE_BITS[bit]
      bits = bits & ~mask
    end
  end
  if bits ~= 0 then
    names[#names + 1] = string.format("%#x", bits)
  end
  return #names > 0 and table.concat(names, "|") or "none"
end

-- The payload: u32 len, u16 gso_size, u16 gso_segs, u32 gso_type, in the
-- host's byte order.
function decode(data)
  local len, gso_size, gso_segs, gso_type = string.unpack("=I4I2I2I4", data)
  return {
    len = len,
    gso_size = gso_size,
    gso_segs = gso_segs,
    gso_type = gso_type_names(gso_type),
  }
end
