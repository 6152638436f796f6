// A fake CANN for the bridge's ABI contract tests: one shared library exporting the symbols the
// bridge resolves from libascendcl, libnnopbase, libopapi and libhccl (the tests install it under
// each of those names as symlinks, so all four share one state). "Device" memory is host memory.
// It does not compute the ops: GetWorkspaceSize checks its tensors and records them, the launch
// writes a fixed byte pattern over the first half of every output (the second half stays as the
// bridge left it) and records a checksum of every input, so the tests can prove what crossed the
// ABI in both directions.
//
// It keeps CANN's rules that a wrong bridge would break on hardware:
//   - ACL contexts are per thread: aclrtSetDevice makes the device's context current on the
//     calling thread only; every other ACL/HCCL/aclnn call from a thread without a current context
//     fails with 107002 (ACL_ERROR_RT_CONTEXT_NULL).
//   - freshly aclrtMalloc'ed memory holds garbage (0xA5 bytes), not zeros.
//
// Built with -DFAKE_CANN_VENDOR=\"name\" -DFAKE_VENDOR_OPS=mask it is instead a vendor's custom op
// library (libcust_opapi.so) exporting only the ops of `mask` (bit k: op k in the order
// dispatchSetup, dispatchTeardown, combineSetup, combineTeardown; bit 4: the size helpers; bits
// 5-7: aclnnMoeDistributeDispatchV2, V3, V4; bits 8-10: aclnnMoeDistributeCombineV2, V3, V4),
// linked against the main fake, whose state it shares; its calls are logged with "servedBy": name.
// The main fake exports all four setup/teardown ops and the V2 ops of -DFAKE_V2_OPS=mask (bit 0-2:
// DispatchV2, V3, V4; bits 3-5: CombineV2, V3, V4; default all), so that a test can give the bridge
// a CANN with only some V2 versions (torch_npu calls V4 if present, else V3, else V2: v2-contract §2.1).
//
// The V2 ops (aclnnMoeDistribute{Dispatch,Combine}V2/V3/V4, v2-contract §2.2) are recorded as the
// family's are (op "dispatchV2" / "combineV2" whatever the version; "fn" names the version called,
// "version" its number, string attributes groupEp, groupTp and commAlg), and GetWorkspaceSize applies
// what v2-contract §8 lets a fake check cheaply, as the A3 tilings do (in both SoC modes: the fake
// models A3's V2 only, §9.5): the attribute ranges, comm_alg, comm_quant_mode 0 or 2, the reserved
// inputs null, x, expert_ids, the mask, scales and expert_scales, the dtypes and sizes of the outputs
// it is given (A, A·128, W·Lρ), and HCCL_BUFFSIZE against §7.2's need (the rank process's
// HCCL_BUFFSIZE, 200 MB when unset). A refusal is 561002 with the tiling's words (the first public
// V2's literal strings where §8 quotes them) in aclGetRecentErrMsg.
//
// Environment:
//   FAKE_CANN_LOG=PATH   every call appended to PATH as one JSON line (O_APPEND: whole lines even
//                        with several processes), each with "fn", "pid" and "device".
//   FAKE_CANN_FAIL=fn:code[@device][,...]
//                        the named function returns `code` (on every device, or only on `device`)
//                        and aclGetRecentErrMsg() then says so.
//   FAKE_CANN_WORKSPACE=BYTES  the workspace size every op asks for (default 1048576).
//   FAKE_CANN_SOC=NAME   what aclrtGetSocName returns (default Ascend910_9392, an A3 SoC). A 950
//                        name (Ascend950..., e.g. Ascend950PR_9599, or Ascend910_95...) selects the
//                        fake's 950 mode, below; any other name keeps the A3 behaviour unchanged.
//   FAKE_CANN_DEVICES=N  what aclrtGetDeviceCount returns (default 8).
//   FAKE_CANN_STREAM_HANG=1 | @device[,@device]
//                        the stream never completes (on every device, or on those listed):
//                        aclrtSynchronizeStreamWithTimeout waits its timeout and returns 507046.
//   FAKE_CANN_SIZE_DISAGREE=field[,field]  the size helpers add 16 to these results (tokenMsgSize,
//                        expandIdxOutSize, assistInfoForCombineOutSize, commCmdInfoOutSize,
//                        combineTokenMsgSize, combineCommCmdInfoOutSize).
//   MOE_FAKE_CANN_OUTPUTS=DIR  the launch copies each output from DIR/rank{epRankId}/{op}.{n}.out{o}.bin
//                        (n: the process's n-th call of that op, from 0; the file must have the
//                        output's size) instead of writing the pattern; a sibling .mask file of
//                        the same size writes only the bytes whose mask byte is non-zero. The
//                        probe's tests feed it the reference's outputs, altered or not.
//
// 950 mode (a 950 FAKE_CANN_SOC; op-contract-950.md, whose rules a wrong bridge or group would break
// on a 950 host):
//   - aclCreateTensor also takes the 950's one-byte floats: 35 fp8_e5m2, 36 fp8_e4m3fn, 37 fp8_e8m0
//     (§1, §11); in A3 mode they stay unknown dtypes, refused as before.
//   - GetWorkspaceSize applies the 950 tilings' checks (§7): comm_type 2 on every op; quant_mode in
//     [0, 4]; expert_token_nums_type 1; the combine tilings' envelope (epWorldSize 2, 4 or 8,
//     moeExpertNum 32, no shared experts, BS 8, 16 or 256, H 4096 or 7168, K 6 or 8); y's dtype and
//     its rows (BS * (K + sharedExpertNum), tokenMsgSize of the quant mode, §2.3); expand_x in y's
//     dtype; dynamic_scales f32 (mode 2) or (A, Align2(ceil(H/32))) fp8_e8m0 (mode 4). A refusal is
//     561002 (ACLNN_ERR_INNER_TILING_ERROR) and aclGetRecentErrMsg gives the [OPB] template's text.
//   - the size helpers compute §10 literally, flaws included: tokenMsgSize Align256(H) for quant
//     mode 0 and Align512(Align32(H) + 4) for every other mode, comm_cmd_info with L = E / (W - S);
//     int64 arithmetic that wraps; null x, expertIds or expandX 161001; x or expertIds not 2-D,
//     S >= W, epRankId < 0, or an expandX that is empty, not 2-D or has a dim <= 0: 161002.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// The op entry points' shared machinery, exported for the vendor builds.
namespace fakecann {
int32_t opWs(const char* fn, const char* op, const std::vector<const void*>& ins, const std::vector<const char*>& inNames,
             const std::vector<bool>& optional, const std::vector<void*>& outs, const char* groupEp,
             const std::vector<int64_t>& ints, const std::vector<const char*>& intNames, const char* commAlg,
             uint64_t* ws, void** exec, const char* servedBy, const char* groupTp = nullptr, int version = 0);
int32_t opLaunch(const char* fn, void* workspace, uint64_t wsSize, void* exec, void* stream, const char* servedBy);
int32_t dispatchSizes(const void* x, const void* expertIds, int64_t W, int64_t rank, int64_t E, int64_t SN, int64_t S,
                      int64_t quant, int64_t gbs, uint64_t* out, const char* servedBy);
int32_t combineSizes(const void* expandX, int64_t W, uint64_t* out, const char* servedBy);
}  // namespace fakecann

#ifndef FAKE_CANN_VENDOR
namespace {

std::mutex g_mu;
int g_device = -1;
std::map<uintptr_t, size_t> g_alloc;  // device allocations: address -> bytes
thread_local std::string g_lastErr;
int g_logFd = -2;
uint64_t g_nextId = 1;

struct FakeTensor {
  uint64_t id;
  std::vector<int64_t> dims, strides, storage;
  int dtype, format;
  int64_t offset;
  void* data;
};
struct FakeExecutor {
  uint64_t id;
  std::string op;
  uint64_t workspace;
  std::vector<FakeTensor*> inputs, outputs;
  int64_t rank;
};
struct FakeComm {
  std::string name;
  uint32_t rank, nRanks;
};
std::map<uintptr_t, FakeTensor*> g_tensors;
std::map<uintptr_t, FakeExecutor*> g_execs;
int g_streams = 0;
std::map<std::string, int> g_opCalls;  // launches per op in this process
std::map<int, void*> g_contexts;      // device -> its context
thread_local void* t_context = nullptr;

void writeLog(const std::string& line) {
  if (g_logFd == -2) {
    const char* p = getenv("FAKE_CANN_LOG");
    g_logFd = p && *p ? open(p, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
  }
  if (g_logFd < 0) return;
  std::string l = line + "\n";
  ssize_t n = write(g_logFd, l.data(), l.size());
  (void)n;
}

std::string jstr(const char* s) {
  if (!s) return "null";
  std::string o = "\"";
  for (const char* p = s; *p; p++) {
    if (*p == '"' || *p == '\\') o += '\\';
    if (static_cast<unsigned char>(*p) < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", *p);
      o += b;
    } else {
      o += *p;
    }
  }
  return o + "\"";
}

std::string jarr(const std::vector<int64_t>& v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); i++) o += (i ? "," : "") + std::to_string(v[i]);
  return o + "]";
}

// One log record: {"fn":..., "pid":..., "device":..., <fields>}
void logCall(const char* fn, const std::string& fields, int status) {
  std::ostringstream o;
  o << "{\"fn\":\"" << fn << "\",\"pid\":" << getpid() << ",\"device\":" << g_device << ",\"status\":" << status;
  if (!fields.empty()) o << "," << fields;
  o << "}";
  writeLog(o.str());
}

// The injected failure for `fn`, or 0.
int injected(const char* fn) {
  const char* spec = getenv("FAKE_CANN_FAIL");
  if (!spec) return 0;
  std::string s = spec;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    std::string item = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    size_t colon = item.find(':');
    if (colon != std::string::npos && item.substr(0, colon) == fn) {
      std::string rest = item.substr(colon + 1);
      int dev = -1;
      size_t at = rest.find('@');
      if (at != std::string::npos) {
        dev = atoi(rest.c_str() + at + 1);
        rest = rest.substr(0, at);
      }
      if (dev < 0 || dev == g_device) {
        int code = atoi(rest.c_str());
        g_lastErr = std::string("EZ9999: fake CANN: injected error ") + std::to_string(code) + " in " + fn +
                    " on device " + std::to_string(g_device);
        return code;
      }
    }
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return 0;
}

// The context rule (see the file comment): true, with `*status` and the message set, when the
// calling thread has no current context.
bool noContext(const char* fn, int* status) {
  if (t_context) return false;
  *status = 107002;
  g_lastErr = std::string("EE1001: fake CANN: ") + fn +
              " called on a thread with no current context (ACL contexts are per thread: call aclrtSetDevice or "
              "aclrtSetCurrentContext on this thread first)";
  return true;
}

// FAKE_CANN_SIZE_DISAGREE lists `field`.
bool disagrees(const char* field) {
  const char* spec = getenv("FAKE_CANN_SIZE_DISAGREE");
  if (!spec) return false;
  std::string s = std::string(",") + spec + ",";
  return s.find(std::string(",") + field + ",") != std::string::npos;
}

bool isDevice(const void* p, size_t n) {
  auto it = g_alloc.upper_bound(reinterpret_cast<uintptr_t>(p));
  if (it == g_alloc.begin()) return false;
  --it;
  return reinterpret_cast<uintptr_t>(p) + n <= it->first + it->second;
}

std::string tensorJson(const FakeTensor* t) {
  if (!t) return "null";
  std::ostringstream o;
  o << "{\"id\":" << t->id << ",\"dtype\":" << t->dtype << ",\"format\":" << t->format << ",\"shape\":" << jarr(t->dims)
    << ",\"strides\":" << jarr(t->strides) << ",\"offset\":" << t->offset << ",\"storageShape\":" << jarr(t->storage)
    << ",\"onDevice\":" << (t->data && isDevice(t->data, 1) ? "true" : "false") << "}";
  return o.str();
}

FakeTensor* lookup(const void* t) {
  auto it = g_tensors.find(reinterpret_cast<uintptr_t>(t));
  return it == g_tensors.end() ? nullptr : it->second;
}

// The 950 mode (see the file comment): FAKE_CANN_SOC names an Ascend 950.
bool is950() {
  const char* s = getenv("FAKE_CANN_SOC");
  if (!s) return false;
  std::string n = s;
  return n.rfind("Ascend950", 0) == 0 || n.rfind("Ascend910_95", 0) == 0;
}

size_t elemBytes(int dtype) {
  switch (dtype) {
    case 0: case 3: return 4;
    case 1: case 27: return 2;
    case 2: case 12: return 1;
    case 9: return 8;
    case 35: case 36: case 37: return is950() ? 1 : 0;  // fp8_e5m2, fp8_e4m3fn, fp8_e8m0: the 950's
    default: return 0;
  }
}

size_t tensorBytes(const FakeTensor* t) {
  size_t n = elemBytes(t->dtype);
  for (int64_t d : t->dims) n *= static_cast<size_t>(d);
  return n;
}

uint64_t fnv1a(const void* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  const uint8_t* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;  // FNV prime
  }
  return h;
}

int64_t alignUp(int64_t v, int64_t n) { return (v + n - 1) / n * n; }

// y's dim 1 as the 950 dispatch tilings check it, per quant mode (op-contract-950 §2.3, DSt:716-727,
// DTt:506-525): mode 3 counts its ceil(H/128) scales as one byte each, as the tiling does.
int64_t tokenMsgSize950(int64_t mode, int64_t h) {
  switch (mode) {
    case 0: return alignUp(h, 256);
    case 1: return alignUp(h, 512);
    case 2: return alignUp(alignUp(h, 32) + 4, 512);
    case 3: return alignUp(alignUp(h, 128) + (h + 127) / 128, 512);
    default: return alignUp(alignUp(h, 256) + alignUp((h + 31) / 32, 2), 512);
  }
}

std::string dimsText(const FakeTensor* t) {
  std::string o = "[";
  for (size_t i = 0; i < t->dims.size(); i++) o += (i ? ", " : "") + std::to_string(t->dims[i]);
  return o + "]";
}

bool oneOf(int64_t v, std::initializer_list<int64_t> set) {
  for (int64_t x : set) {
    if (v == x) return true;
  }
  return false;
}

// The 950 tilings' checks (op-contract-950 §7) on a call whose tensors are all present: 0, or
// 561002 with aclGetRecentErrMsg in the [OPB] templates' words (hicann/opbase log.h).
int32_t tiling950(const std::string& op, const std::vector<FakeTensor*>& in, const std::vector<FakeTensor*>& out,
                  const std::vector<int64_t>& ints, const std::vector<const char*>& names) {
  auto attr = [&](const char* n) -> int64_t {
    for (size_t i = 0; i < names.size(); i++) {
      if (strcmp(names[i], n) == 0) return ints[i];
    }
    return -1;
  };
  const std::string node = op == "dispatchSetup"      ? "MoeDistributeDispatchSetup"
                           : op == "dispatchTeardown" ? "MoeDistributeDispatchTeardown"
                           : op == "combineSetup"     ? "MoeDistributeCombineSetup"
                                                      : "MoeDistributeCombineTeardown";
  auto refuse = [&](const std::string& what) {
    g_lastErr = "EZ9999: fake CANN (950): " + what;
    return 561002;
  };
  // WITH_INVALID_ATTR (log.h:154); combine_teardown reports all as FOR_INVALID_VALUE (:733)
  auto badAttr = [&](const char* p, int64_t v, const std::string& exp) {
    return refuse(std::string(op == "combineTeardown" ? "Parameter " : "Attribute ") + p + " of " + node +
                  " has incorrect value " + std::to_string(v) + ". It should be " + exp + ".");
  };
  auto badValue = [&](const char* p, int64_t v, const std::string& exp) {
    return refuse(std::string("Parameter ") + p + " of " + node + " has incorrect value " + std::to_string(v) +
                  ". It should be " + exp + ".");
  };
  auto badShape = [&](const char* p, const FakeTensor* t, const std::string& reason) {
    return refuse(std::string("Parameter ") + p + " of " + node + " has incorrect shape " + dimsText(t) + ". Reason: " + reason + ".");
  };
  auto badDtype = [&](const char* p, const FakeTensor* t, const std::string& reason) {
    return refuse(std::string("Parameter ") + p + " of " + node + " has incorrect dtype " + std::to_string(t->dtype) +
                  ". Reason: " + reason + ".");
  };
  const int64_t commType = attr("commType");
  if (commType != 2) return badAttr("commType", commType, "2");
  const int64_t W = attr("epWorldSize"), E = attr("moeExpertNum"), SN = attr("sharedExpertNum"), S = attr("sharedExpertRankNum");
  if (op == "dispatchSetup" || op == "dispatchTeardown") {
    const int64_t quant = attr("quantMode");
    if (quant < 0 || quant > 4) return badAttr("quantMode", quant, op == "dispatchSetup" ? "0 to 4" : "[0, 4]");
    if (op == "dispatchTeardown" && attr("expertTokenNumsType") != 1) return badAttr("expertTokenNumsType", attr("expertTokenNumsType"), "1");
    const FakeTensor* x = in[0];
    const FakeTensor* ids = in[op == "dispatchSetup" ? 1 : 2];
    const FakeTensor* y = op == "dispatchSetup" ? out[0] : in[1];
    if (x->dims.size() != 2 || ids->dims.size() != 2) return badShape("x", x, "x and expertIds must be 2-D");
    const int64_t bs = x->dims[0], h = x->dims[1], k = ids->dims[1];
    if (op == "dispatchSetup") {
      // DSt:585-607
      const bool ok = quant == 0   ? y->dtype == x->dtype
                      : quant == 1 ? oneOf(y->dtype, {2, 34})
                      : quant == 2 ? oneOf(y->dtype, {2, 35, 36})
                                   : oneOf(y->dtype, {35, 36});
      if (!ok) {
        return badDtype("yOut", y, quant == 0   ? "If quantMode is 0, the dtype of yOut must be the same as that of x"
                                   : quant == 1 ? "If quantMode is 1, the dtype of yOut must be int8 or hif8"
                                   : quant == 2 ? "If quantMode is 2, the dtype of yOut must be int8, fp8_e4m3fn or fp8_e5m2"
                                                : "If quantMode is 3 or 4, the dtype of yOut must be fp8_e4m3fn or fp8_e5m2");
      }
    }
    if (y->dims.size() != 2 || y->dims[0] != bs * (k + SN)) return badShape("yOut", y, "Dim0 of yOut must be equal to BS * (K + sharedExpertNum)");
    if (y->dims[1] != tokenMsgSize950(quant, h)) {
      return badShape("yOut", y, "Dim1 of yOut must be equal to tokenMsgSize (" + std::to_string(tokenMsgSize950(quant, h)) + ")");
    }
    if (op == "dispatchTeardown") {
      const FakeTensor* expandX = out[0];
      const FakeTensor* scales = out[1];
      if (expandX->dtype != y->dtype) return badDtype("expandXOut", expandX, "The dtype of expandXOut must be the same as that of y");
      if (quant == 2 && scales->dtype != 0) return badDtype("dynamicScalesOut", scales, "the dtype of dynamicScalesOut must be float32 when quantMode is 2");
      if (quant == 4) {
        if (scales->dtype != 37) return badDtype("dynamicScalesOut", scales, "the dtype of dynamicScalesOut must be fp8_e8m0 when quantMode is 4");
        const int64_t a = expandX->dims.empty() ? -1 : expandX->dims[0];
        if (scales->dims.size() != 2 || scales->dims[0] != a || scales->dims[1] != alignUp((h + 31) / 32, 2)) {
          return badShape("dynamicScalesOut", scales, "dims of dynamicScalesOut must be (A, Align2(ceil(H / 32))) when quantMode is 4");
        }
      }
    }
    return 0;
  }
  // the combine tilings' envelope (CSa:79-136, CTa:84-153)
  if (!oneOf(W, {2, 4, 8})) return badAttr("epWorldSize", W, op == "combineSetup" ? "{2, 4, 8}" : "2, 4, or 8");
  if (E != 32) return badAttr("moeExpertNum", E, "32");
  if (SN != 0) return badAttr("sharedExpertNum", SN, "0");
  if (S != 0) return badAttr("sharedExpertRankNum", S, "0");
  const FakeTensor* expandX = in[0];
  const FakeTensor* ids = in[op == "combineSetup" ? 1 : 2];
  if (expandX->dims.size() != 2 || ids->dims.size() != 2) return badShape("expandX", expandX, "expandX and expertIds must be 2-D");
  const int64_t bs = ids->dims[0], k = ids->dims[1], h = expandX->dims[1];
  const bool cs = op == "combineSetup";
  if (!oneOf(bs, {8, 16, 256})) return badValue("Bs", bs, cs ? "{8, 16, 256}" : "8, 16, or 256");
  if (!oneOf(h, {4096, 7168})) return badValue("H", h, cs ? "{4096, 7168}" : "4096 or 7168");
  if (!oneOf(k, {6, 8})) return badValue("K", k, cs ? "{6, 8}" : "6 or 8");
  return 0;
}

// ---- the V2 ops' tiling checks (v2-contract §7.2, §8), A3 ---------------------------------------

// The dtype names the tilings print (Ops::Base::ToString of ge::DataType).
const char* dtypeName(int d) {
  switch (d) {
    case 0: return "DT_FLOAT";
    case 1: return "DT_FLOAT16";
    case 2: return "DT_INT8";
    case 3: return "DT_INT32";
    case 9: return "DT_INT64";
    case 12: return "DT_BOOL";
    case 27: return "DT_BF16";
    default: return "DT_UNDEFINED";
  }
}

// What v2-contract §8 lets a fake check cheaply, in the order of the A3 dispatch / combine tilings
// (CheckGroupAttrParams, CheckExpertAttrParams, CheckSharedAttrs, CheckCommAlgAttrs, CheckAttrs, the
// tensor shape checks, then CheckWinSize, §7.2). 0, or 561002 with the message in g_lastErr.
// `in` / `inNames`: the op's optional and required inputs by aclnn name (absent ones null); `out`:
// its outputs in the prototype's order; attributes by name (Z, C, Q are 0 on the V2 API, which has none).
int32_t tilingV2(const std::string& op, const std::vector<FakeTensor*>& in, const std::vector<const char*>& inNames,
                 const std::vector<FakeTensor*>& out, const std::vector<int64_t>& ints,
                 const std::vector<const char*>& names, const char* groupEp, const char* commAlg) {
  const bool dispatch = op == "dispatchV2";
  auto attr = [&](const char* n) -> int64_t {
    for (size_t i = 0; i < names.size(); i++) {
      if (strcmp(names[i], n) == 0) return ints[i];
    }
    return 0;
  };
  auto input = [&](const char* n) -> FakeTensor* {
    for (size_t i = 0; i < inNames.size(); i++) {
      if (strcmp(inNames[i], n) == 0) return in[i];
    }
    return nullptr;
  };
  auto refuse = [&](const std::string& what) {
    g_lastErr = "EZ9999: fake CANN (V2 tiling): " + what;
    return 561002;
  };
  auto num = [](int64_t v) { return std::to_string(v); };
  const int64_t W = attr("epWorldSize"), rank = attr("epRankId"), E = attr("moeExpertNum");
  const int64_t tpW = attr("tpWorldSize"), tpRank = attr("tpRankId"), shard = attr("expertShardType");
  const int64_t SN = attr("sharedExpertNum"), S = attr("sharedExpertRankNum"), gbs = attr("globalBs");
  const int64_t Z = attr("zeroExpertNum"), C = attr("copyExpertNum"), Q = attr("constExpertNum");
  const std::string alg = commAlg ? commAlg : "";
  const bool mesh2 = alg == "fullmesh_v2";
  // ---- attributes (CheckGroupAttrParams ... CheckCommAlgAttrs) ----
  if (!groupEp || !*groupEp) return refuse("groupEpPtr is null.");
  if (strlen(groupEp) >= 128) return refuse("Parameter groupEp has incorrect value. It should be a name of [1, 128) characters.");
  if (W < 2 || W > 768) return refuse("epWorldSize is invalid, only support [2, 768], but got epWorldSize=" + num(W) + ".");
  if (rank < 0 || rank >= W) return refuse("epRankId is invalid, only support [0, " + num(W) + "), but got epRankId=" + num(rank) + ".");
  if (tpW < 0 || tpW > 1) return refuse("tpWorldSize >= 2 is not supported, got tpWorldSize=" + num(tpW) + ".");
  if (tpRank != 0) return refuse("tpRankId is invalid, NoTp mode only support 0, but got tpRankId=" + num(tpRank) + ".");
  if (shard != 0) return refuse("expertShardType is invalid, only support 0, but got expertShardType=" + num(shard) + ".");
  if (SN < 0 || SN > 4) return refuse("sharedExpertNum is invalid, only support [0, 4], but got sharedExpertNum=" + num(SN) + ".");
  if (S < 0 || S >= W) return refuse("sharedExpertRankNum is invalid, only support [0, " + num(W) + "), but got sharedExpertRankNum=" + num(S) + ".");
  if (S == 0 && SN > 1) return refuse("sharedExpertNum only support 0 or 1 when sharedExpertRankNum is 0, but got sharedExpertNum=" + num(SN) + ".");
  if (S > 0 && (SN == 0 || S % SN != 0)) {
    return refuse("sharedExpertRankNum should be divisible by sharedExpertNum, but got sharedExpertRankNum=" + num(S) + ", sharedExpertNum=" + num(SN) + ".");
  }
  if (E <= 0 || E > 1024) return refuse("moeExpertNum is invalid, only support (0, 1024], but got moeExpertNum=" + num(E) + ".");
  if (E % (W - S) != 0) {
    return refuse("moeExpertNum should be divisible by (epWorldSize - sharedExpertRankNum), but got moeExpertNum=" + num(E) + ", epWorldSize=" + num(W) + ", sharedExpertRankNum=" + num(S) + ".");
  }
  const int64_t L = E / (W - S);
  if (L * W > 2048) {
    return refuse("localMoeExpertNum is invalid, localMoeExpertNum * epWorldSize must be less than or equal to 2048, but got localMoeExpertNum=" + num(L) + ", epWorldSize=" + num(W) + ".");
  }
  for (const char* n : {"zeroExpertNum", "copyExpertNum", "constExpertNum"}) {
    if (attr(n) < 0) return refuse(std::string(n) + " less than 0 is invalid, but got " + n + "=" + num(attr(n)) + ".");
  }
  if (E + Z + C + Q > 2147483647LL) {
    return refuse("zeroExpertNum[" + num(Z) + "] + copyExpertNum[" + num(C) + "] + constExpertNum[" + num(Q) + "] + moeExpertNum[" + num(E) + "] exceed INT32_MAX.");
  }
  if (dispatch) {
    if (alg != "" && alg != "fullmesh_v1" && alg != "fullmesh_v2" && alg != "hierarchy") {
      return refuse("Parameter commAlg of operator MoeDistributeDispatchV2 has incorrect value " + alg + ". It should be \"hierarchy\", \"fullmesh_v1\" or \"fullmesh_v2\".");
    }
    const int64_t quant = attr("quantMode");
    if (quant == 1) return refuse("cannot support static quant now.");
    if (quant != 0 && quant != 2) return refuse("quantMode is invalid, only support [0, 2], but got quantMode=" + num(quant) + ".");
    const bool isScales = input("scales") != nullptr;
    if (isScales && quant != 2) {
      return refuse("quant mode and scales not match, isScales is " + num(isScales) + ", quantMode is " + num(quant) + ".");
    }
    const int64_t ent = attr("expertTokenNumsType");
    if (ent != 0 && ent != 1) return refuse("expertTokenNumsType only support 0 or 1, but got expertTokenNumsType=" + num(ent) + ".");
  } else {
    const int64_t cqm = attr("commQuantMode");
    if (cqm != 0 && cqm != 2) return refuse("commQuantMode only support 0(default) or 2(int8 comm quant), but got commQuantMode=" + num(cqm) + ".");
    for (const char* n : {"activationScale", "weightScale", "groupList"}) {
      if (input(n)) return refuse(std::string(n) + " only support input None.");
    }
  }
  // ---- tensors: x (dispatch) or expand_x (combine), expert_ids, BS, K, H, global_bs ----
  FakeTensor* x = input(dispatch ? "x" : "expandX");
  FakeTensor* ids = input("expertIds");
  if (x->dims.size() != 2) return refuse(std::string(dispatch ? "x" : "expandX") + " dims must be 2, but current dim num is " + num(x->dims.size()) + ".");
  if (x->dtype != 27 && x->dtype != 1) {
    return refuse(std::string(dispatch ? "x" : "expandX") + " dataType is invalid, dataType should be bf16 or float16, but is " + dtypeName(x->dtype) + ".");
  }
  if (ids->dims.size() != 2) return refuse("expertIds dims must be 2, but current dim num is " + num(ids->dims.size()) + ".");
  if (ids->dtype != 3) return refuse(std::string("expertId datatype is invalid, datatype should be int32, but is ") + dtypeName(ids->dtype) + ".");
  const int64_t bs = ids->dims[0], K = ids->dims[1], H = x->dims[1];
  if (dispatch && x->dims[0] != bs) return refuse("expertIds's dim0 " + num(bs) + " not equal to x's dim0 " + num(x->dims[0]) + ".");
  const int64_t bsMax = mesh2 ? 256 : 512;
  if (bs < 1 || bs > bsMax) {
    return refuse(mesh2 ? "When comm_alg is fullmesh_v2, bs should be between [1, 256], but got " + num(bs) + "."
                        : "xDim0(BS) is invalid. Should be between [1, 512], but got xDim0=" + num(bs) + ".");
  }
  const int64_t kCap = std::min<int64_t>(mesh2 ? 12 : 16, E + Z + C + Q);
  if (K <= 0 || K > kCap) {
    return refuse("expertIdShape's dim1(k) should be in (0, min(" + num(mesh2 ? 12 : 16) + ", moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum = " + num(E + Z + C + Q) + ")], but got expertIdShape's dim1=" + num(K) + ".");
  }
  if (H < 1024 || H > 8192) return refuse("xShape dims1(H) should be in [1024, 8192], but got " + num(H) + ".");
  if (gbs != 0 && (gbs < bs * W || gbs % W != 0)) {
    return refuse("globalBS is invalid, only support 0 or maxBs(maxBs is the largest bs on all ranks) * epWorldSize, but got globalBS=" + num(gbs) + ", bs=" + num(bs) + ", epWorldSize=" + num(W) + ".");
  }
  if (FakeTensor* m = input("xActiveMask")) {
    const bool ok = m->dtype == 12 && ((m->dims.size() == 1 && m->dims[0] == bs) || (m->dims.size() == 2 && m->dims[0] == bs && m->dims[1] == K));
    if (!ok) return refuse("The input of xActiveMask dim0 = " + num(m->dims.empty() ? -1 : m->dims[0]) + " is not equal to x dim0 = " + num(bs) + ", or it is not bool (BS) or (BS, K).");
    if (gbs > bs * W) return refuse("Different bs on different rank cannot work when isActiveMask=true, globalBS=" + num(gbs) + ", bs * epWorldSize=" + num(bs * W) + ".");
  }
  // A (CheckInputInfoTensorShape / combine CalA): MoE rank gbs·min(L, K), shared rank maxBS·ceil(W/R)
  const int64_t gbsReal = gbs == 0 ? bs * W : gbs;
  const int64_t maxBs = gbsReal / W;
  const bool sharedRank = rank < S;
  const int64_t R = S > 0 ? S / SN : 0;
  const int64_t A = sharedRank ? maxBs * ((W + R - 1) / R) : gbsReal * std::min(L, K);
  const int64_t Lr = sharedRank ? 1 : L;
  const int64_t SNp = S > 0 ? SN : 0;
  auto oneD = [&](FakeTensor* t, int dtype, const char* n) -> std::string {
    if (t->dims.size() != 1) return std::string(n) + " dims must be 1, but current dim num is " + num(t->dims.size()) + ".";
    if (t->dtype != dtype) return std::string(n) + " datatype is invalid, datatype should be " + dtypeName(dtype) + ", but is " + dtypeName(t->dtype) + ".";
    return "";
  };
  std::string bad;
  if (dispatch) {
    const int64_t quant = attr("quantMode");
    if (FakeTensor* sc = input("scales")) {
      const int64_t rows = E + SNp;
      if (sc->dtype != 0 || sc->dims.size() != 2 || sc->dims[0] != rows || sc->dims[1] != H) {
        return refuse(std::string("scales's dim0 not equal to ") + (S > 0 ? "moeExpertNum + sharedExpertNum" : "moeExpertNum") + " (" + num(rows) + ") or dim1 not equal to H, or not float: got " + dimsText(sc) + ".");
      }
    }
    if (FakeTensor* es = input("expertScales")) {
      if (es->dtype != 0 || es->dims.size() != 2 || es->dims[0] != bs || es->dims[1] != K) return refuse("expertScales should be float (BS, K) = (" + num(bs) + ", " + num(K) + "), but got " + dimsText(es) + ".");
    }
    FakeTensor* expandX = out[0];
    if (quant == 2 ? expandX->dtype != 2 : expandX->dtype != x->dtype) {
      return refuse(quant == 2 ? std::string("expandX dataType is invalid, dataType should be int8, but is ") + dtypeName(expandX->dtype) + "."
                               : std::string("expandX dataType is invalid, dataType should be equal to x dataType ") + dtypeName(x->dtype) + ", but is " + dtypeName(expandX->dtype) + ".");
    }
    if (expandX->dims.size() != 2 || expandX->dims[1] != H) return refuse("expandX should be 2-D with dim1 = H = " + num(H) + ", but got " + dimsText(expandX) + ".");
    if (expandX->dims[0] < A) return refuse("expandX's dim0 not greater than or equal to A, expandX's dim0 = " + num(expandX->dims[0]) + ", A = " + num(A) + ".");
    if (!(bad = oneD(out[1], 0, "dynamicScales")).empty()) return refuse(bad);
    if (quant == 2 && out[1]->dims[0] < A) return refuse("dynamicScales's dim0 not greater than or equal to A, dim0 = " + num(out[1]->dims[0]) + ", A = " + num(A) + ".");
    if (!(bad = oneD(out[2], 3, "assistInfo")).empty()) return refuse(bad);
    if (out[2]->dims[0] < A * 128) return refuse("assistInfoDim0 < minAssistInfoDim0, assistInfoDim0 = " + num(out[2]->dims[0]) + ", minAssistInfoDim0 = " + num(A * 128) + ".");
    if (!(bad = oneD(out[3], 9, "expertTokenNums")).empty()) return refuse(bad);
    if (out[3]->dims[0] != Lr) {
      return refuse(sharedRank ? "shared expertTokenNums's dim0 " + num(out[3]->dims[0]) + " not equal to 1."
                               : "expertTokenNums's dim0 " + num(out[3]->dims[0]) + " not equal to localMoeExpertNum " + num(L) + ".");
    }
    if (!(bad = oneD(out[4], 3, "epRecvCount")).empty()) return refuse(bad);
    if (out[4]->dims[0] < W * Lr) {
      return refuse("dimension 0 of epRecvCount should be greater than or equal to epWorldSize * localMoeExpertNum = " + num(W * Lr) + ", but got " + num(out[4]->dims[0]) + ".");
    }
    if (!(bad = oneD(out[5], 3, "tpRecvCount")).empty()) return refuse(bad);
    if (!(bad = oneD(out[6], 0, "expandScales")).empty()) return refuse(bad);
    if (out[6]->dims[0] < A) return refuse("expandScales's dim0 not greater than or equal to A, dim0 = " + num(out[6]->dims[0]) + ", A = " + num(A) + ".");
  } else {
    if (x->dims[0] < A) return refuse("expandX's dim0 not greater than or equal to A, expandX's dim0 = " + num(x->dims[0]) + ", A = " + num(A) + ".");
    FakeTensor* assist = input("assistInfoForCombine");
    if (!(bad = oneD(assist, 3, "assistInfoForCombine")).empty()) return refuse(bad);
    if (assist->dims[0] < A * 128) return refuse("assistInfoDim0 < minAssistInfoDim0, assistInfoDim0 = " + num(assist->dims[0]) + ", minAssistInfoDim0 = " + num(A * 128) + ".");
    FakeTensor* send = input("epSendCounts");
    if (!(bad = oneD(send, 3, "epSendCount")).empty()) return refuse(bad);
    if (send->dims[0] < W * Lr) {
      return refuse("epSendCount's dim0 not greater than or equal to localEpSendCountSize, epSendCount's dim0 = " + num(send->dims[0]) + ", localEpSendCountSize = " + num(W * Lr) + ".");
    }
    FakeTensor* w = input("expertScales");
    bool empty = false;
    for (int64_t d : w->dims) empty = empty || d == 0;
    if (w->dtype != 0 || (!empty && (w->dims.size() != 2 || w->dims[0] != bs || w->dims[1] != K))) {
      return refuse("expertScales should be float (BS, K) = (" + num(bs) + ", " + num(K) + ") or empty, but got " + dimsText(w) + ".");
    }
    if (FakeTensor* sx = input("sharedExpertX")) {
      if (S != 0) return refuse("sharedExpertX only support input None when sharedExpertRankNum is non-zero.");
      const bool ok = sx->dtype == x->dtype && ((sx->dims.size() == 2 && sx->dims[0] == bs && sx->dims[1] == H) ||
                                                (sx->dims.size() == 3 && sx->dims[0] * sx->dims[1] == bs && sx->dims[2] == H));
      if (!ok) return refuse("sharedExpertX should be (BS, H) or (a, b, H) with a * b = BS, of expandX's dtype, but got " + dimsText(sx) + ".");
    }
    if (C > 0 && !input("oriX")) return refuse("oriX is required when copyExpertNum > 0.");
    if (FakeTensor* xo = out[0]) {
      if (xo->dtype != x->dtype || xo->dims.size() != 2 || xo->dims[0] != bs || xo->dims[1] != H) {
        return refuse("xOut should be (BS, H) = (" + num(bs) + ", " + num(H) + ") of expandX's dtype, but got " + dimsText(xo) + " of " + dtypeName(xo->dtype) + ".");
      }
    }
  }
  if (FakeTensor* el = input("elasticInfo")) {
    if (el->dtype != 3 || el->dims.size() != 1 || el->dims[0] != 4 + 2 * W) return refuse("elasticInfo's dim0 not equal to 4 + 2 * epWorldSize = " + num(4 + 2 * W) + ".");
  }
  if (FakeTensor* pi = input("performanceInfo")) {
    if (pi->dtype != 9 || pi->dims.size() != 1 || pi->dims[0] != W) return refuse("performanceInfo's dim0 not equal to epWorldSize = " + num(W) + ".");
  }
  // ---- CheckWinSize (§7.2): both terms doubled, +44, L = E/(W − S) on every rank, SN' slots ----
  const int64_t raw = alignUp(2 * H, 32) + 44;
  const int64_t dispatchSlot = mesh2 ? (raw + 479) / 480 * 512 : alignUp(raw, 512);
  const int64_t combineSlot = alignUp(2 * H, 512);
  const uint64_t need = 2ULL * static_cast<uint64_t>(maxBs * dispatchSlot * W * L + maxBs * combineSlot * (K + SNp));
  const char* env = getenv("HCCL_BUFFSIZE");
  const uint64_t mb = env && *env ? strtoull(env, nullptr, 10) : 200;
  if (need > mb * 1048576ULL) {
    return refuse("HCCL_BUFFSIZE_EP is too SMALL, maxBs = " + num(maxBs) + ", h = " + num(H) + ", epWorldSize = " + num(W) +
                  ", localMoeExpertNum = " + num(L) + ", sharedExpertNum = " + num(SNp) + ", tokenNeedSizeDispatch = " + num(dispatchSlot) +
                  ", tokenNeedSizeCombine = " + num(combineSlot) + ", k = " + num(K) +
                  ", NEEDED_HCCL_BUFFSIZE(((maxBs * tokenNeedSizeDispatch * epWorldSize * localMoeExpertNum) + (maxBs * tokenNeedSizeCombine * (k + sharedExpertNum))) * 2) = " +
                  std::to_string(need / 1048576ULL + 1) + "MB, HCCL_BUFFSIZE=" + std::to_string(mb) + "MB, actual CCL_BUFFSIZE=" + std::to_string(mb) + "MB.");
  }
  return 0;
}

}  // namespace

namespace fakecann {

// GetWorkspaceSize of every op: validates and records its tensors and attributes.
int32_t opWs(const char* fn, const char* op, const std::vector<const void*>& ins, const std::vector<const char*>& inNames,
             const std::vector<bool>& optional, const std::vector<void*>& outs, const char* groupEp,
             const std::vector<int64_t>& ints, const std::vector<const char*>& intNames, const char* commAlg,
             uint64_t* ws, void** exec, const char* servedBy, const char* groupTp, int version) {
  std::lock_guard<std::mutex> l(g_mu);
  const bool v2 = version > 0;
  std::ostringstream f;
  f << "\"op\":\"" << op << "\",\"servedBy\":" << jstr(servedBy) << ",\"groupEp\":" << jstr(groupEp);
  if (v2) f << ",\"version\":" << version << ",\"groupTp\":" << jstr(groupTp);
  f << ",\"commAlg\":" << jstr(commAlg) << ",\"attrs\":{";
  for (size_t i = 0; i < ints.size(); i++) f << (i ? "," : "") << "\"" << intNames[i] << "\":" << ints[i];
  f << "},\"inputs\":{";
  int status = 0;
  if (!noContext(fn, &status)) status = injected(fn);
  for (size_t i = 0; i < ins.size(); i++) {
    FakeTensor* t = ins[i] ? lookup(ins[i]) : nullptr;
    f << (i ? "," : "") << "\"" << inNames[i] << "\":" << tensorJson(t);
    if (!status && !t && !optional[i]) {
      status = 161001;
      g_lastErr = std::string("fake CANN: ") + inNames[i] + " is a null pointer";
    }
  }
  f << "},\"outputs\":[";
  for (size_t i = 0; i < outs.size(); i++) {
    FakeTensor* t = outs[i] ? lookup(outs[i]) : nullptr;
    f << (i ? "," : "") << tensorJson(t);
    if (!status && !t) {
      status = 161001;
      g_lastErr = "fake CANN: output " + std::to_string(i) + " is a null pointer";
    }
  }
  f << "]";
  if (!status && (!ws || !exec)) status = 161001;
  if (!status && (v2 || is950())) {
    std::vector<FakeTensor*> in, out;
    for (const void* t : ins) in.push_back(t ? lookup(t) : nullptr);
    for (void* t : outs) out.push_back(lookup(t));
    status = v2 ? tilingV2(op, in, inNames, out, ints, intNames, groupEp, commAlg) : tiling950(op, in, out, ints, intNames);
  }
  if (!status) {
    const char* w = getenv("FAKE_CANN_WORKSPACE");
    auto* e = new FakeExecutor{g_nextId++, op, w ? strtoull(w, nullptr, 10) : 1048576ull, {}, {}, ints.size() > 1 ? ints[1] : -1};
    for (const void* t : ins) e->inputs.push_back(t ? lookup(t) : nullptr);
    for (void* t : outs) e->outputs.push_back(lookup(t));
    g_execs[reinterpret_cast<uintptr_t>(e)] = e;
    *ws = e->workspace;
    *exec = e;
    f << ",\"workspaceSize\":" << e->workspace << ",\"executor\":" << e->id;
  }
  logCall(fn, f.str(), status);
  return status;
}

// Reads a whole file; false when it does not exist.
bool readFile(const std::string& path, std::vector<uint8_t>* out) {
  FILE* fp = fopen(path.c_str(), "rb");
  if (!fp) return false;
  out->clear();
  uint8_t buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, fp)) > 0) out->insert(out->end(), buf, buf + n);
  fclose(fp);
  return true;
}

// The launch of every op: checks executor, workspace and stream, records input checksums and
// writes the outputs: the pattern byte[i] = (outputIndex * 37 + i) & 0xff over the first half of
// each, or MOE_FAKE_CANN_OUTPUTS's files.
int32_t opLaunch(const char* fn, void* workspace, uint64_t wsSize, void* exec, void* stream, const char* servedBy) {
  std::lock_guard<std::mutex> l(g_mu);
  int status = 0;
  if (!noContext(fn, &status)) status = injected(fn);
  std::ostringstream f;
  f << "\"servedBy\":" << jstr(servedBy) << ",";
  auto it = g_execs.find(reinterpret_cast<uintptr_t>(exec));
  FakeExecutor* e = it == g_execs.end() ? nullptr : it->second;
  f << "\"workspaceSize\":" << wsSize << ",\"workspaceOnDevice\":" << (workspace && isDevice(workspace, wsSize) ? "true" : "false")
    << ",\"stream\":" << (stream ? "true" : "false");
  if (!e) {
    if (!status) status = 161002, g_lastErr = "fake CANN: unknown executor";
  } else {
    f << ",\"executor\":" << e->id << ",\"op\":\"" << e->op << "\"";
    if (!status && wsSize != e->workspace) status = 161002, g_lastErr = "fake CANN: workspace size differs from GetWorkspaceSize's";
    if (!status && e->workspace > 0 && !isDevice(workspace, e->workspace)) status = 161002, g_lastErr = "fake CANN: workspace is not device memory";
    if (!status && !stream) status = 161001, g_lastErr = "fake CANN: null stream";
    f << ",\"inputChecksums\":[";
    for (size_t i = 0; i < e->inputs.size(); i++) {
      FakeTensor* t = e->inputs[i];
      f << (i ? "," : "");
      if (t && t->data && isDevice(t->data, tensorBytes(t))) f << "\"" << std::hex << fnv1a(t->data, tensorBytes(t)) << std::dec << "\"";
      else f << "null";
    }
    f << "]";
    int call = g_opCalls[e->op]++;
    const char* dir = getenv("MOE_FAKE_CANN_OUTPUTS");
    if (!status) {
      for (size_t o = 0; o < e->outputs.size(); o++) {
        FakeTensor* t = e->outputs[o];
        if (!t || !t->data || !isDevice(t->data, tensorBytes(t))) {
          status = 161002, g_lastErr = "fake CANN: output " + std::to_string(o) + " is not device memory";
          break;
        }
        uint8_t* b = static_cast<uint8_t*>(t->data);
        size_t n = tensorBytes(t);
        if (dir && *dir) {
          std::string base = std::string(dir) + "/rank" + std::to_string(e->rank) + "/" + e->op + "." + std::to_string(call) +
                             ".out" + std::to_string(o);
          std::vector<uint8_t> data, mask;
          if (!readFile(base + ".bin", &data) || data.size() != n) {
            status = 561000;
            g_lastErr = "fake CANN: MOE_FAKE_CANN_OUTPUTS: " + base + ".bin is missing or not " + std::to_string(n) + " bytes";
            break;
          }
          bool masked = readFile(base + ".mask", &mask);
          if (masked && mask.size() != n) {
            status = 561000, g_lastErr = "fake CANN: " + base + ".mask is not " + std::to_string(n) + " bytes";
            break;
          }
          for (size_t i = 0; i < n; i++) {
            if (!masked || mask[i]) b[i] = data[i];
          }
        } else {
          for (size_t i = 0; i < (n + 1) / 2; i++) b[i] = static_cast<uint8_t>((o * 37 + i) & 0xff);
        }
      }
    }
    f << ",\"call\":" << call << ",\"rank\":" << e->rank;
    g_execs.erase(it);  // an executor runs once
    delete e;
  }
  logCall(fn, f.str(), status);
  return status;
}

// int64 arithmetic as the helpers' C++ does it on the hardware's compilers: wrapping, not trapping.
int64_t wadd(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
int64_t wmul(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b)); }
// Align(x, a) of the helpers: ((x + a - 1) / a) * a, C++ division (toward zero)
int64_t walign(int64_t v, int64_t a) { return wmul(wadd(v, a - 1) / a, a); }

// aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize as the 950 sources write it (op-contract-950
// §10; DSapi:104-160), literally: the checks in its order, then the sizes. Mirrors
// src/contract/size-helpers.ts. Returns the status; `out` filled on success.
int32_t dispatchSizes950(FakeTensor* tx, FakeTensor* te, int64_t W, int64_t rank, int64_t E, int64_t SN, int64_t S,
                         int64_t quant, int64_t gbs, uint64_t* out) {
  if (!tx) return g_lastErr = "fake CANN (950): x is nullptr", 161001;
  if (!te) return g_lastErr = "fake CANN (950): expertIds is nullptr", 161001;
  if (tx->dims.size() != 2) return g_lastErr = "fake CANN (950): x's DimNum should be 2, but got " + std::to_string(tx->dims.size()) + ".", 161002;
  if (te->dims.size() != 2) {
    return g_lastErr = "fake CANN (950): expertIds's DimNum should be 2, but got " + std::to_string(te->dims.size()) + ".", 161002;
  }
  int64_t bs = tx->dims[0], h = tx->dims[1], k = te->dims[1];
  // the flaw kept: Align512(Align32(H) + 4) for every quant mode but 0 (right for mode 2 only, §2.3)
  int64_t token = quant == 0 ? walign(h, 256) : walign(wadd(walign(h, 32), 4), 512);
  int64_t expandIdx = wmul(bs, k);
  int64_t gbsReal = gbs == 0 ? wmul(bs, W) : gbs;
  if (S >= W) {
    return g_lastErr = "fake CANN (950): sharedExpertRankNum should be less than epWorldSize[" + std::to_string(W) + "], but got " +
                       std::to_string(S) + ".", 161002;
  }
  if (rank < 0) return g_lastErr = "fake CANN (950): epRankId should not be less than 0, but got " + std::to_string(rank) + ".", 161002;
  int64_t L, A;
  if (rank < S) {
    L = 1;
    A = wmul(wmul(bs, W), SN) / S;
  } else {
    L = E / (W - S);  // the flaw kept: W - S, where the dispatch_setup tiling checks W - SN
    A = wmul(gbsReal, L < k ? L : k);
  }
  out[0] = static_cast<uint64_t>(token);
  out[1] = static_cast<uint64_t>(expandIdx);
  out[2] = static_cast<uint64_t>(wmul(A, 128));
  out[3] = static_cast<uint64_t>(wmul(wadd(wmul(bs, wadd(k, SN)), wmul(W, L)), 16));
  return 0;
}

// aclnnMoeDistributeCombineSetupTeardownCalcOutputSize as the 950 sources write it (§10;
// CSapi:169-208): from expandX (A, H) and epWorldSize alone.
int32_t combineSizes950(FakeTensor* t, int64_t W, uint64_t* out) {
  if (!t) return g_lastErr = "fake CANN (950): expandX is nullptr", 161001;
  for (int64_t d : t->dims) {
    if (d == 0) return g_lastErr = "fake CANN (950): expandX is an empty tensor", 161002;
  }
  if (t->dims.size() != 2) return g_lastErr = "fake CANN (950): expandX's DimNum should be 2, but got " + std::to_string(t->dims.size()) + ".", 161002;
  int64_t a = t->dims[0], h = t->dims[1];
  if (a <= 0 || h <= 0) return g_lastErr = "fake CANN (950): expandX's Dim should be greater than zero.", 161002;
  out[0] = static_cast<uint64_t>(walign(wadd(walign(h, 32), wmul(walign(h, 8) / 8, 4)), 512));
  out[1] = static_cast<uint64_t>(wmul(wadd(a, W), 16));
  return 0;
}

// The size helpers' formulas, as the open op_api sources compute them (aclnn_moe_distribute_*_setup.cpp);
// in the 950 mode literally, with their error codes (dispatchSizes950, combineSizes950).
int32_t dispatchSizes(const void* x, const void* expertIds, int64_t W, int64_t rank, int64_t E, int64_t SN, int64_t S,
                      int64_t quant, int64_t gbs, uint64_t* out, const char* servedBy) {
  std::lock_guard<std::mutex> l(g_mu);
  int status = 0;
  const char* fn = "aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize";
  FakeTensor* tx = lookup(x);
  FakeTensor* te = lookup(expertIds);
  bool computed = false;
  if (!noContext(fn, &status) && !(status = injected(fn))) {
    if (is950()) {
      status = dispatchSizes950(tx, te, W, rank, E, SN, S, quant, gbs, out);
      computed = true;
    } else if (!tx || !te || tx->dims.size() != 2 || te->dims.size() != 2) {
      status = 161002, g_lastErr = "fake CANN: x and expertIds must be 2-D tensors";
    }
  }
  if (!status && computed) {
    const char* names[4] = {"tokenMsgSize", "expandIdxOutSize", "assistInfoForCombineOutSize", "commCmdInfoOutSize"};
    for (int i = 0; i < 4; i++) {
      if (disagrees(names[i])) out[i] += 16;
    }
  } else if (!status) {
    auto align = [](int64_t v, int64_t n) { return (v + n - 1) / n * n; };
    int64_t bs = tx->dims[0], h = tx->dims[1], k = te->dims[1];
    int64_t g = gbs == 0 ? bs * W : gbs;
    int64_t L = rank < S ? 1 : E / (W - S);
    int64_t a = rank < S ? bs * W * SN / S : g * std::min(L, k);
    out[0] = quant == 0 ? align(h, 256) : align(align(h, 32) + 4, 512);
    out[1] = bs * k;
    out[2] = a * 128;
    out[3] = (bs * (k + SN) + W * L) * 16;
    const char* names[4] = {"tokenMsgSize", "expandIdxOutSize", "assistInfoForCombineOutSize", "commCmdInfoOutSize"};
    for (int i = 0; i < 4; i++) {
      if (disagrees(names[i])) out[i] += 16;
    }
  }
  std::ostringstream f;
  f << "\"servedBy\":" << jstr(servedBy);
  if (!status) f << ",\"sizes\":[" << out[0] << "," << out[1] << "," << out[2] << "," << out[3] << "]";
  logCall(fn, f.str(), status);
  return status;
}

int32_t combineSizes(const void* expandX, int64_t W, uint64_t* out, const char* servedBy) {
  std::lock_guard<std::mutex> l(g_mu);
  int status = 0;
  const char* fn = "aclnnMoeDistributeCombineSetupTeardownCalcOutputSize";
  FakeTensor* t = lookup(expandX);
  bool computed = false;
  if (!noContext(fn, &status) && !(status = injected(fn))) {
    if (is950()) {
      status = combineSizes950(t, W, out);
      computed = true;
    } else if (!t || t->dims.size() != 2) {
      status = 161002, g_lastErr = "fake CANN: expandX must be a 2-D tensor";
    }
  }
  if (!status && computed) {
    if (disagrees("combineTokenMsgSize")) out[0] += 16;
    if (disagrees("combineCommCmdInfoOutSize")) out[1] += 16;
  } else if (!status) {
    auto align = [](int64_t v, int64_t n) { return (v + n - 1) / n * n; };
    int64_t a = t->dims[0], h = t->dims[1];
    out[0] = align(align(h, 32) + align(h, 8) / 8 * 4, 512);
    out[1] = (a + W) * 16;
    if (disagrees("combineTokenMsgSize")) out[0] += 16;
    if (disagrees("combineCommCmdInfoOutSize")) out[1] += 16;
  }
  std::ostringstream f;
  f << "\"servedBy\":" << jstr(servedBy);
  if (!status) f << ",\"sizes\":[" << out[0] << "," << out[1] << "]";
  logCall(fn, f.str(), status);
  return status;
}

}  // namespace fakecann

extern "C" {

// ---- libascendcl ------------------------------------------------------------------------------
int aclInit(const char* config) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = injected("aclInit");
  logCall("aclInit", "\"config\":" + jstr(config) + ",\"HCCL_BUFFSIZE\":" + jstr(getenv("HCCL_BUFFSIZE")), s);
  return s;
}
int aclFinalize() {
  std::lock_guard<std::mutex> l(g_mu);
  int s = injected("aclFinalize");
  logCall("aclFinalize", "\"liveAllocations\":" + std::to_string(g_alloc.size()) + ",\"liveTensors\":" +
                             std::to_string(g_tensors.size()) + ",\"liveStreams\":" + std::to_string(g_streams), s);
  return s;
}
// Makes the device's context current on the calling thread only.
int aclrtSetDevice(int32_t dev) {
  std::lock_guard<std::mutex> l(g_mu);
  g_device = dev;
  int s = injected("aclrtSetDevice");
  if (!s) {
    void*& ctx = g_contexts[dev];
    if (!ctx) ctx = malloc(8);
    t_context = ctx;
  }
  logCall("aclrtSetDevice", "\"deviceId\":" + std::to_string(dev), s);
  return s;
}
int aclrtResetDevice(int32_t dev) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtResetDevice", &s)) s = injected("aclrtResetDevice");
  if (!s) t_context = nullptr;
  logCall("aclrtResetDevice", "\"deviceId\":" + std::to_string(dev), s);
  return s;
}
int aclrtGetCurrentContext(void** ctx) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtGetCurrentContext", &s)) s = injected("aclrtGetCurrentContext");
  if (!s) *ctx = t_context;
  logCall("aclrtGetCurrentContext", "", s);
  return s;
}
int aclrtSetCurrentContext(void* ctx) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = injected("aclrtSetCurrentContext");
  bool known = false;
  for (const auto& [dev, c] : g_contexts) known = known || c == ctx;
  if (!s && !known) s = 107000, g_lastErr = "fake CANN: aclrtSetCurrentContext of an unknown context";
  if (!s) t_context = ctx;
  logCall("aclrtSetCurrentContext", "", s);
  return s;
}
const char* aclrtGetSocName() {
  const char* s = getenv("FAKE_CANN_SOC");
  return s && *s ? s : "Ascend910_9392";
}
int aclrtGetDeviceCount(uint32_t* count) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = injected("aclrtGetDeviceCount");
  const char* n = getenv("FAKE_CANN_DEVICES");
  if (!s) *count = n && *n ? static_cast<uint32_t>(atoi(n)) : 8;
  logCall("aclrtGetDeviceCount", s ? "" : "\"count\":" + std::to_string(*count), s);
  return s;
}
int aclrtCreateStream(void** stream) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtCreateStream", &s)) s = injected("aclrtCreateStream");
  if (!s) {
    *stream = malloc(16);
    g_streams++;
  }
  logCall("aclrtCreateStream", "", s);
  return s;
}
int aclrtDestroyStream(void* stream) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtDestroyStream", &s)) s = injected("aclrtDestroyStream");
  if (!s && stream) {
    free(stream);
    g_streams--;
  }
  logCall("aclrtDestroyStream", "", s);
  return s;
}
int aclrtSynchronizeStream(void* stream) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtSynchronizeStream", &s)) s = injected("aclrtSynchronizeStream");
  if (!s && !stream) s = 107000;
  logCall("aclrtSynchronizeStream", "", s);
  return s;
}
// FAKE_CANN_STREAM_HANG: a stream whose op never completes (a dead peer, on hardware).
bool streamHangs() {
  const char* spec = getenv("FAKE_CANN_STREAM_HANG");
  if (!spec || !*spec) return false;
  if (std::string(spec) == "1") return true;
  std::string s = std::string(",") + spec + ",";
  return s.find(",@" + std::to_string(g_device) + ",") != std::string::npos;
}
int aclrtSynchronizeStreamWithTimeout(void* stream, int32_t timeout) {
  int s = 0;
  bool hang = false;
  {
    std::lock_guard<std::mutex> l(g_mu);
    if (!noContext("aclrtSynchronizeStreamWithTimeout", &s)) s = injected("aclrtSynchronizeStreamWithTimeout");
    if (!s && !stream) s = 107000;
    hang = !s && streamHangs();
  }
  if (hang) {
    // -1 waits for ever on hardware; ten minutes stands for it here
    std::this_thread::sleep_for(std::chrono::milliseconds(timeout < 0 ? 600000 : timeout));
    s = 507046;
    g_lastErr = "EE9999: fake CANN: stream synchronize timed out after " + std::to_string(timeout) + " ms";
  }
  std::lock_guard<std::mutex> l(g_mu);
  logCall("aclrtSynchronizeStreamWithTimeout", "\"timeout\":" + std::to_string(timeout), s);
  return s;
}
int aclrtMalloc(void** p, size_t size, int policy) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtMalloc", &s)) s = injected("aclrtMalloc");
  std::ostringstream f;
  f << "\"size\":" << size << ",\"policy\":" << policy;
  if (!s) {
    *p = malloc(size ? size : 1);
    memset(*p, 0xA5, size ? size : 1);  // device memory is not cleared by the allocator
    g_alloc[reinterpret_cast<uintptr_t>(*p)] = size;
    f << ",\"ptr\":\"" << *p << "\"";
  }
  logCall("aclrtMalloc", f.str(), s);
  return s;
}
int aclrtFree(void* p) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtFree", &s)) s = injected("aclrtFree");
  std::ostringstream f;
  f << "\"ptr\":\"" << p << "\"";
  auto it = g_alloc.find(reinterpret_cast<uintptr_t>(p));
  if (!s && it == g_alloc.end()) s = 107000, g_lastErr = "fake CANN: aclrtFree of memory that is not a device allocation";
  if (!s) {
    g_alloc.erase(it);
    free(p);
  }
  logCall("aclrtFree", f.str(), s);
  return s;
}
int aclrtMemcpy(void* dst, size_t destMax, const void* src, size_t count, int kind) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtMemcpy", &s)) s = injected("aclrtMemcpy");
  std::ostringstream f;
  f << "\"destMax\":" << destMax << ",\"count\":" << count << ",\"kind\":" << kind;
  if (!s && count > destMax) s = 107000, g_lastErr = "fake CANN: count > destMax";
  if (!s && kind == 1 && !isDevice(dst, count)) s = 107000, g_lastErr = "fake CANN: host-to-device copy into host memory";
  if (!s && kind == 2 && !isDevice(src, count)) s = 107000, g_lastErr = "fake CANN: device-to-host copy from host memory";
  if (!s && kind == 1) f << ",\"checksum\":\"" << std::hex << fnv1a(src, count) << std::dec << "\"";
  if (!s) memcpy(dst, src, count);
  logCall("aclrtMemcpy", f.str(), s);
  return s;
}
int aclrtMemset(void* dst, size_t destMax, int32_t value, size_t count) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclrtMemset", &s)) s = injected("aclrtMemset");
  std::ostringstream f;
  f << "\"destMax\":" << destMax << ",\"count\":" << count << ",\"value\":" << value;
  if (!s && count > destMax) s = 107000, g_lastErr = "fake CANN: count > destMax";
  if (!s && !isDevice(dst, count)) s = 107000, g_lastErr = "fake CANN: aclrtMemset of host memory";
  if (!s) memset(dst, value, count);
  logCall("aclrtMemset", f.str(), s);
  return s;
}
const char* aclGetRecentErrMsg() { return g_lastErr.empty() ? nullptr : g_lastErr.c_str(); }

// ---- libnnopbase ------------------------------------------------------------------------------
void* aclCreateTensor(const int64_t* viewDims, uint64_t viewDimsNum, int dataType, const int64_t* stride, int64_t offset,
                      int format, const int64_t* storageDims, uint64_t storageDimsNum, void* data) {
  std::lock_guard<std::mutex> l(g_mu);
  auto* t = new FakeTensor{g_nextId++, std::vector<int64_t>(viewDims, viewDims + viewDimsNum),
                           std::vector<int64_t>(stride, stride + viewDimsNum),
                           std::vector<int64_t>(storageDims, storageDims + storageDimsNum), dataType, format, offset, data};
  int ctx = 0;
  bool bad = noContext("aclCreateTensor", &ctx) || injected("aclCreateTensor") != 0 || elemBytes(dataType) == 0;
  logCall("aclCreateTensor", "\"tensor\":" + tensorJson(t), bad ? (ctx ? ctx : -1) : 0);
  if (bad) {
    delete t;
    return nullptr;
  }
  g_tensors[reinterpret_cast<uintptr_t>(t)] = t;
  return t;
}
int32_t aclDestroyTensor(const void* tensor) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("aclDestroyTensor", &s)) s = injected("aclDestroyTensor");
  auto it = g_tensors.find(reinterpret_cast<uintptr_t>(tensor));
  if (!s && it == g_tensors.end()) s = 161002, g_lastErr = "fake CANN: unknown tensor";
  std::string f = it == g_tensors.end() ? "\"id\":null" : "\"id\":" + std::to_string(it->second->id);
  if (!s) {
    delete it->second;
    g_tensors.erase(it);
  }
  logCall("aclDestroyTensor", f, s);
  return s;
}

// ---- libhccl ----------------------------------------------------------------------------------
int HcclGetRootInfo(void* rootInfo) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("HcclGetRootInfo", &s)) s = injected("HcclGetRootInfo");
  if (!s) {
    memset(rootInfo, 0, 4108);
    snprintf(static_cast<char*>(rootInfo), 4108, "fake-root-%d", static_cast<int>(getpid()));
  }
  logCall("HcclGetRootInfo", s ? "" : "\"root\":" + jstr(static_cast<char*>(rootInfo)), s);
  return s;
}
int HcclCommInitRootInfo(uint32_t nRanks, const void* rootInfo, uint32_t rank, void** comm) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("HcclCommInitRootInfo", &s)) s = injected("HcclCommInitRootInfo");
  std::string root(static_cast<const char*>(rootInfo), strnlen(static_cast<const char*>(rootInfo), 4108));
  if (!s) *comm = new FakeComm{"fake_hccl_" + root, rank, nRanks};
  logCall("HcclCommInitRootInfo",
          "\"nRanks\":" + std::to_string(nRanks) + ",\"rank\":" + std::to_string(rank) + ",\"root\":" + jstr(root.c_str()), s);
  return s;
}
int HcclCommInitClusterInfo(const char* clusterInfo, uint32_t rank, void** comm) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("HcclCommInitClusterInfo", &s)) s = injected("HcclCommInitClusterInfo");
  FILE* fp = clusterInfo ? fopen(clusterInfo, "rb") : nullptr;
  long size = -1;
  if (fp) {
    fseek(fp, 0, SEEK_END);
    size = ftell(fp);
    fclose(fp);
  }
  if (!s && size < 0) s = 3, g_lastErr = std::string("fake HCCL: cannot read rank table ") + (clusterInfo ? clusterInfo : "(null)");
  if (!s) *comm = new FakeComm{"fake_hccl_cluster", rank, 0};
  logCall("HcclCommInitClusterInfo",
          "\"clusterInfo\":" + jstr(clusterInfo) + ",\"rank\":" + std::to_string(rank) + ",\"fileBytes\":" + std::to_string(size), s);
  return s;
}
int HcclGetCommName(void* comm, char* name) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("HcclGetCommName", &s)) s = injected("HcclGetCommName");
  if (!s && (!comm || !name)) s = 2;
  if (!s) snprintf(name, 128, "%s", static_cast<FakeComm*>(comm)->name.c_str());
  logCall("HcclGetCommName", s ? "" : "\"name\":" + jstr(name), s);
  return s;
}
int HcclCommDestroy(void* comm) {
  std::lock_guard<std::mutex> l(g_mu);
  int s = 0;
  if (!noContext("HcclCommDestroy", &s)) s = injected("HcclCommDestroy");
  if (!s) delete static_cast<FakeComm*>(comm);
  logCall("HcclCommDestroy", "", s);
  return s;
}

}  // extern "C"
#endif  // !FAKE_CANN_VENDOR

#ifdef FAKE_CANN_VENDOR
#define FAKE_SERVED_BY FAKE_CANN_VENDOR
#define FAKE_HAS(bit) ((FAKE_VENDOR_OPS >> (bit)) & 1)
#else
#define FAKE_SERVED_BY "fake_cann"
// the main fake: the family's ops and size helpers always, the V2 versions of FAKE_V2_OPS
#ifndef FAKE_V2_OPS
#define FAKE_V2_OPS 63
#endif
#define FAKE_HAS(bit) ((bit) < 5 ? 1 : ((FAKE_V2_OPS >> ((bit) - 5)) & 1))
#endif
using fakecann::opLaunch;
using fakecann::opWs;

extern "C" {

// ---- libopapi: the four ops ---------------------------------------------------------------------
#if FAKE_HAS(0)
int32_t aclnnMoeDistributeDispatchSetupGetWorkspaceSize(const void* x, const void* expertIds, const void* scales,
                                                        const void* mask, const char* groupEp, int64_t W, int64_t rank,
                                                        int64_t E, int64_t shard, int64_t SN, int64_t S, int64_t quant,
                                                        int64_t gbs, int64_t commType, const char* commAlg, void* y,
                                                        void* expandIdx, void* commCmdInfo, uint64_t* ws, void** exec) {
  return opWs("aclnnMoeDistributeDispatchSetupGetWorkspaceSize", "dispatchSetup", {x, expertIds, scales, mask},
              {"x", "expertIds", "scales", "xActiveMask"}, {false, false, true, true}, {y, expandIdx, commCmdInfo}, groupEp,
              {W, rank, E, shard, SN, S, quant, gbs, commType},
              {"epWorldSize", "epRankId", "moeExpertNum", "expertShardType", "sharedExpertNum", "sharedExpertRankNum",
               "quantMode", "globalBs", "commType"},
              commAlg, ws, exec, FAKE_SERVED_BY);
}
int32_t aclnnMoeDistributeDispatchSetup(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeDispatchSetup", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(1)
int32_t aclnnMoeDistributeDispatchTeardownGetWorkspaceSize(const void* x, const void* y, const void* expertIds,
                                                           const void* commCmdInfo, const char* groupEp, int64_t W,
                                                           int64_t rank, int64_t E, int64_t shard, int64_t SN, int64_t S,
                                                           int64_t quant, int64_t gbs, int64_t entType, int64_t commType,
                                                           char* commAlg, void* expandX, void* dynamicScales,
                                                           void* assist, void* expertTokenNums, uint64_t* ws, void** exec) {
  return opWs("aclnnMoeDistributeDispatchTeardownGetWorkspaceSize", "dispatchTeardown", {x, y, expertIds, commCmdInfo},
              {"x", "y", "expertIds", "commCmdInfo"}, {false, false, false, false},
              {expandX, dynamicScales, assist, expertTokenNums}, groupEp, {W, rank, E, shard, SN, S, quant, gbs, entType, commType},
              {"epWorldSize", "epRankId", "moeExpertNum", "expertShardType", "sharedExpertNum", "sharedExpertRankNum",
               "quantMode", "globalBs", "expertTokenNumsType", "commType"},
              commAlg, ws, exec, FAKE_SERVED_BY);
}
int32_t aclnnMoeDistributeDispatchTeardown(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeDispatchTeardown", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(2)
int32_t aclnnMoeDistributeCombineSetupGetWorkspaceSize(const void* expandX, const void* expertIds, const void* assist,
                                                       const char* groupEp, int64_t W, int64_t rank, int64_t E,
                                                       int64_t shard, int64_t SN, int64_t S, int64_t gbs, int64_t cqm,
                                                       int64_t commType, const char* commAlg, void* quantExpandX,
                                                       void* commCmdInfo, uint64_t* ws, void** exec) {
  return opWs("aclnnMoeDistributeCombineSetupGetWorkspaceSize", "combineSetup", {expandX, expertIds, assist},
              {"expandX", "expertIds", "assistInfoForCombine"}, {false, false, false}, {quantExpandX, commCmdInfo}, groupEp,
              {W, rank, E, shard, SN, S, gbs, cqm, commType},
              {"epWorldSize", "epRankId", "moeExpertNum", "expertShardType", "sharedExpertNum", "sharedExpertRankNum",
               "globalBs", "commQuantMode", "commType"},
              commAlg, ws, exec, FAKE_SERVED_BY);
}
int32_t aclnnMoeDistributeCombineSetup(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeCombineSetup", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(3)
int32_t aclnnMoeDistributeCombineTeardownGetWorkspaceSize(const void* expandX, const void* quantExpandX,
                                                          const void* expertIds, const void* expandIdx,
                                                          const void* expertScales, const void* commCmdInfo,
                                                          const void* mask, const void* sharedX, const char* groupEp,
                                                          int64_t W, int64_t rank, int64_t E, int64_t shard, int64_t SN,
                                                          int64_t S, int64_t gbs, int64_t cqm, int64_t commType,
                                                          const char* commAlg, void* xOut, uint64_t* ws, void** exec) {
  return opWs("aclnnMoeDistributeCombineTeardownGetWorkspaceSize", "combineTeardown",
              {expandX, quantExpandX, expertIds, expandIdx, expertScales, commCmdInfo, mask, sharedX},
              {"expandX", "quantExpandX", "expertIds", "expandIdx", "expertScales", "commCmdInfo", "xActiveMask",
               "sharedExpertX"},
              {false, false, false, false, false, false, true, true}, {xOut}, groupEp,
              {W, rank, E, shard, SN, S, gbs, cqm, commType},
              {"epWorldSize", "epRankId", "moeExpertNum", "expertShardType", "sharedExpertNum", "sharedExpertRankNum",
               "globalBs", "commQuantMode", "commType"},
              commAlg, ws, exec, FAKE_SERVED_BY);
}
int32_t aclnnMoeDistributeCombineTeardown(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeCombineTeardown", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif

#if FAKE_HAS(4)
int32_t aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize(
    const void* x, const void* expertIds, const void* scales, const void* mask, const char* groupEp, int64_t W, int64_t rank,
    int64_t E, int64_t shard, int64_t SN, int64_t S, int64_t quant, int64_t gbs, int64_t entType, int64_t commType,
    const char* commAlg, uint64_t* tokenMsgSize, uint64_t* expandIdxOutSize, uint64_t* assistInfoForCombineOutSize,
    uint64_t* commCmdInfoOutSize) {
  (void)scales, (void)mask, (void)groupEp, (void)shard, (void)entType, (void)commType, (void)commAlg;
  uint64_t out[4] = {0, 0, 0, 0};
  int32_t s = fakecann::dispatchSizes(x, expertIds, W, rank, E, SN, S, quant, gbs, out, FAKE_SERVED_BY);
  if (!s) *tokenMsgSize = out[0], *expandIdxOutSize = out[1], *assistInfoForCombineOutSize = out[2], *commCmdInfoOutSize = out[3];
  return s;
}
int32_t aclnnMoeDistributeCombineSetupTeardownCalcOutputSize(const void* expandX, const void* expertIds, const void* assist,
                                                             const char* groupEp, int64_t W, int64_t rank, int64_t E,
                                                             int64_t shard, int64_t SN, int64_t S, int64_t gbs, int64_t cqm,
                                                             int64_t commType, const char* commAlg, uint64_t* tokenMsgSize,
                                                             uint64_t* commCmdInfoOutSize) {
  (void)expertIds, (void)assist, (void)groupEp, (void)rank, (void)E, (void)shard, (void)SN, (void)S, (void)gbs, (void)cqm;
  (void)commType, (void)commAlg;
  uint64_t out[2] = {0, 0};
  int32_t s = fakecann::combineSizes(expandX, W, out, FAKE_SERVED_BY);
  if (!s) *tokenMsgSize = out[0], *commCmdInfoOutSize = out[1];
  return s;
}
#endif

}  // extern "C"

// ---- libopapi: the V2 ops (v2-contract §2.2), V2, V3 and V4 ------------------------------------
// One body per op: the versions differ only in the optional inputs and attributes they have (V3:
// elastic_info and zero/copy/const expert nums; V4: performance_info too). Absent ones are logged
// as null inputs and are not in "attrs".
namespace {
const std::vector<const char*> kDispatchV2In = {"x", "expertIds", "scales", "xActiveMask", "expertScales", "elasticInfo", "performanceInfo"};
const std::vector<bool> kDispatchV2Opt = {false, false, true, true, true, true, true};
const std::vector<const char*> kCombineV2In = {"expandX", "expertIds", "assistInfoForCombine", "epSendCounts", "expertScales",
                                               "tpSendCounts", "xActiveMask", "activationScale", "weightScale", "groupList",
                                               "expandScales", "sharedExpertX", "elasticInfo", "oriX", "constExpertAlpha1",
                                               "constExpertAlpha2", "constExpertV", "performanceInfo"};
const std::vector<bool> kCombineV2Opt = {false, false, false, false, false, true, true, true, true, true, true, true, true, true, true, true, true, true};

int32_t dispatchV2Ws(int version, const void* x, const void* ids, const void* scales, const void* mask, const void* es,
                     const void* elastic, const void* perf, const char* groupEp, int64_t W, int64_t rank, int64_t E,
                     const char* groupTp, int64_t tpW, int64_t tpRank, int64_t shard, int64_t SN, int64_t S, int64_t quant,
                     int64_t gbs, int64_t ent, const char* commAlg, int64_t Z, int64_t C, int64_t Q, void* expandX,
                     void* dynamicScales, void* assist, void* etn, void* epRecv, void* tpRecv, void* expandScales,
                     uint64_t* ws, void** exec) {
  const std::string fn = "aclnnMoeDistributeDispatchV" + std::to_string(version) + "GetWorkspaceSize";
  std::vector<int64_t> ints = {W, rank, E, tpW, tpRank, shard, SN, S, quant, gbs, ent};
  std::vector<const char*> names = {"epWorldSize", "epRankId", "moeExpertNum", "tpWorldSize", "tpRankId", "expertShardType",
                                    "sharedExpertNum", "sharedExpertRankNum", "quantMode", "globalBs", "expertTokenNumsType"};
  if (version >= 3) {
    ints.insert(ints.end(), {Z, C, Q});
    names.insert(names.end(), {"zeroExpertNum", "copyExpertNum", "constExpertNum"});
  }
  return opWs(fn.c_str(), "dispatchV2", {x, ids, scales, mask, es, elastic, perf}, kDispatchV2In, kDispatchV2Opt,
              {expandX, dynamicScales, assist, etn, epRecv, tpRecv, expandScales}, groupEp, ints, names, commAlg, ws, exec,
              FAKE_SERVED_BY, groupTp, version);
}

int32_t combineV2Ws(int version, const std::vector<const void*>& ins, const char* groupEp, int64_t W, int64_t rank,
                    int64_t E, const char* groupTp, int64_t tpW, int64_t tpRank, int64_t shard, int64_t SN, int64_t S,
                    int64_t gbs, int64_t outDtype, int64_t cqm, int64_t glt, const char* commAlg, int64_t Z, int64_t C,
                    int64_t Q, void* xOut, uint64_t* ws, void** exec) {
  const std::string fn = "aclnnMoeDistributeCombineV" + std::to_string(version) + "GetWorkspaceSize";
  std::vector<int64_t> ints = {W, rank, E, tpW, tpRank, shard, SN, S, gbs, outDtype, cqm, glt};
  std::vector<const char*> names = {"epWorldSize", "epRankId", "moeExpertNum", "tpWorldSize", "tpRankId", "expertShardType",
                                    "sharedExpertNum", "sharedExpertRankNum", "globalBs", "outDtype", "commQuantMode", "groupListType"};
  if (version >= 3) {
    ints.insert(ints.end(), {Z, C, Q});
    names.insert(names.end(), {"zeroExpertNum", "copyExpertNum", "constExpertNum"});
  }
  return opWs(fn.c_str(), "combineV2", ins, kCombineV2In, kCombineV2Opt, {xOut}, groupEp, ints, names, commAlg, ws, exec,
              FAKE_SERVED_BY, groupTp, version);
}
}  // namespace

extern "C" {
#if FAKE_HAS(5)
int32_t aclnnMoeDistributeDispatchV2GetWorkspaceSize(const void* x, const void* ids, const void* scales, const void* mask,
                                                     const void* es, const char* groupEp, int64_t W, int64_t rank,
                                                     int64_t E, const char* groupTp, int64_t tpW, int64_t tpRank,
                                                     int64_t shard, int64_t SN, int64_t S, int64_t quant, int64_t gbs,
                                                     int64_t ent, const char* commAlg, void* expandX, void* dynamicScales,
                                                     void* assist, void* etn, void* epRecv, void* tpRecv, void* expandScales,
                                                     uint64_t* ws, void** exec) {
  return dispatchV2Ws(2, x, ids, scales, mask, es, nullptr, nullptr, groupEp, W, rank, E, groupTp, tpW, tpRank, shard, SN, S,
                      quant, gbs, ent, commAlg, 0, 0, 0, expandX, dynamicScales, assist, etn, epRecv, tpRecv, expandScales,
                      ws, exec);
}
int32_t aclnnMoeDistributeDispatchV2(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeDispatchV2", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(6)
int32_t aclnnMoeDistributeDispatchV3GetWorkspaceSize(const void* x, const void* ids, const void* scales, const void* mask,
                                                     const void* es, const void* elastic, const char* groupEp, int64_t W,
                                                     int64_t rank, int64_t E, const char* groupTp, int64_t tpW,
                                                     int64_t tpRank, int64_t shard, int64_t SN, int64_t S, int64_t quant,
                                                     int64_t gbs, int64_t ent, const char* commAlg, int64_t Z, int64_t C,
                                                     int64_t Q, void* expandX, void* dynamicScales, void* assist, void* etn,
                                                     void* epRecv, void* tpRecv, void* expandScales, uint64_t* ws,
                                                     void** exec) {
  return dispatchV2Ws(3, x, ids, scales, mask, es, elastic, nullptr, groupEp, W, rank, E, groupTp, tpW, tpRank, shard, SN, S,
                      quant, gbs, ent, commAlg, Z, C, Q, expandX, dynamicScales, assist, etn, epRecv, tpRecv, expandScales,
                      ws, exec);
}
int32_t aclnnMoeDistributeDispatchV3(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeDispatchV3", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(7)
int32_t aclnnMoeDistributeDispatchV4GetWorkspaceSize(const void* x, const void* ids, const void* scales, const void* mask,
                                                     const void* es, const void* elastic, const void* perf,
                                                     const char* groupEp, int64_t W, int64_t rank, int64_t E,
                                                     const char* groupTp, int64_t tpW, int64_t tpRank, int64_t shard,
                                                     int64_t SN, int64_t S, int64_t quant, int64_t gbs, int64_t ent,
                                                     const char* commAlg, int64_t Z, int64_t C, int64_t Q, void* expandX,
                                                     void* dynamicScales, void* assist, void* etn, void* epRecv,
                                                     void* tpRecv, void* expandScales, uint64_t* ws, void** exec) {
  return dispatchV2Ws(4, x, ids, scales, mask, es, elastic, perf, groupEp, W, rank, E, groupTp, tpW, tpRank, shard, SN, S,
                      quant, gbs, ent, commAlg, Z, C, Q, expandX, dynamicScales, assist, etn, epRecv, tpRecv, expandScales,
                      ws, exec);
}
int32_t aclnnMoeDistributeDispatchV4(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeDispatchV4", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(8)
int32_t aclnnMoeDistributeCombineV2GetWorkspaceSize(const void* expandX, const void* ids, const void* assist,
                                                    const void* epSend, const void* es, const void* tpSend,
                                                    const void* mask, const void* actScale, const void* wScale,
                                                    const void* groupList, const void* expandScales, const void* sharedX,
                                                    const char* groupEp, int64_t W, int64_t rank, int64_t E,
                                                    const char* groupTp, int64_t tpW, int64_t tpRank, int64_t shard,
                                                    int64_t SN, int64_t S, int64_t gbs, int64_t outDtype, int64_t cqm,
                                                    int64_t glt, const char* commAlg, void* xOut, uint64_t* ws,
                                                    void** exec) {
  return combineV2Ws(2, {expandX, ids, assist, epSend, es, tpSend, mask, actScale, wScale, groupList, expandScales, sharedX,
                         nullptr, nullptr, nullptr, nullptr, nullptr, nullptr},
                     groupEp, W, rank, E, groupTp, tpW, tpRank, shard, SN, S, gbs, outDtype, cqm, glt, commAlg, 0, 0, 0, xOut,
                     ws, exec);
}
int32_t aclnnMoeDistributeCombineV2(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeCombineV2", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(9)
int32_t aclnnMoeDistributeCombineV3GetWorkspaceSize(const void* expandX, const void* ids, const void* assist,
                                                    const void* epSend, const void* es, const void* tpSend,
                                                    const void* mask, const void* actScale, const void* wScale,
                                                    const void* groupList, const void* expandScales, const void* sharedX,
                                                    const void* elastic, const void* oriX, const void* a1, const void* a2,
                                                    const void* v, const char* groupEp, int64_t W, int64_t rank, int64_t E,
                                                    const char* groupTp, int64_t tpW, int64_t tpRank, int64_t shard,
                                                    int64_t SN, int64_t S, int64_t gbs, int64_t outDtype, int64_t cqm,
                                                    int64_t glt, const char* commAlg, int64_t Z, int64_t C, int64_t Q,
                                                    void* xOut, uint64_t* ws, void** exec) {
  return combineV2Ws(3, {expandX, ids, assist, epSend, es, tpSend, mask, actScale, wScale, groupList, expandScales, sharedX,
                         elastic, oriX, a1, a2, v, nullptr},
                     groupEp, W, rank, E, groupTp, tpW, tpRank, shard, SN, S, gbs, outDtype, cqm, glt, commAlg, Z, C, Q, xOut,
                     ws, exec);
}
int32_t aclnnMoeDistributeCombineV3(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeCombineV3", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
#if FAKE_HAS(10)
int32_t aclnnMoeDistributeCombineV4GetWorkspaceSize(const void* expandX, const void* ids, const void* assist,
                                                    const void* epSend, const void* es, const void* tpSend,
                                                    const void* mask, const void* actScale, const void* wScale,
                                                    const void* groupList, const void* expandScales, const void* sharedX,
                                                    const void* elastic, const void* oriX, const void* a1, const void* a2,
                                                    const void* v, const void* perf, const char* groupEp, int64_t W,
                                                    int64_t rank, int64_t E, const char* groupTp, int64_t tpW,
                                                    int64_t tpRank, int64_t shard, int64_t SN, int64_t S, int64_t gbs,
                                                    int64_t outDtype, int64_t cqm, int64_t glt, const char* commAlg,
                                                    int64_t Z, int64_t C, int64_t Q, void* xOut, uint64_t* ws,
                                                    void** exec) {
  return combineV2Ws(4, {expandX, ids, assist, epSend, es, tpSend, mask, actScale, wScale, groupList, expandScales, sharedX,
                         elastic, oriX, a1, a2, v, perf},
                     groupEp, W, rank, E, groupTp, tpW, tpRank, shard, SN, S, gbs, outDtype, cqm, glt, commAlg, Z, C, Q, xOut,
                     ws, exec);
}
int32_t aclnnMoeDistributeCombineV4(void* ws, uint64_t n, void* exec, void* stream) {
  return opLaunch("aclnnMoeDistributeCombineV4", ws, n, exec, stream, FAKE_SERVED_BY);
}
#endif
}  // extern "C"
