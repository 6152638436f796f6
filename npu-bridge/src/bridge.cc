// moe_npu_bridge: runs the MoE distribute ops on an Ascend NPU for one rank of an EP group, from
// Node: the setup/teardown family (aclnnMoeDistribute{Dispatch,Combine}{Setup,Teardown}) and the V2
// ops (aclnnMoeDistribute{Dispatch,Combine}V2, or their V3/V4 supersets, v2-contract §2.2).
//
// CANN is loaded at run time with dlopen/dlsym, so this file needs no CANN header or library to
// build: the few C prototypes it calls are declared below from the public headers (acl/acl.h,
// aclnn/acl_meta.h, hccl/hccl.h and mc2/moe_distribute_*/op_api/aclnn_moe_distribute_*.h).
// `load()` reports {available: false, reason} when a library or a symbol is missing.
//
// The A3 and the Ascend 950 ops have the same aclnn signatures (op-contract-950.md §1): the caller
// passes the attributes (comm_type 2 on 950) and the outputs' dtypes and shapes (the 950's fp8
// y / expand_x and e8m0 dynamic_scales are sized here at one byte), and the messages of a refused
// call depend on whether the SoC is a 950 (socIs950).
//
// One process drives one device (the npu backend forks one child per rank). Ops run on a worker
// thread (Napi::AsyncWorker): inputs are copied host -> device, the aclTensors are created, the
// outputs are cleared (aclrtMemset, zero or a poison byte), the op's workspace is sized and
// allocated, the op is launched and the stream synchronised with a timeout, the outputs are
// copied device -> host, and every tensor, buffer and workspace is released, also when a call
// fails. Every failing CANN call becomes a JS error carrying the API name, the status code and
// aclGetRecentErrMsg()'s text.
//
// ACL contexts are per thread: aclrtSetDevice makes the device's context current on the JS
// thread only, and the AsyncWorkers run on libuv pool threads, where no context is current (any
// ACL/HCCL/aclnn call there fails with 107002, ACL_ERROR_RT_CONTEXT_NULL). So init() keeps the
// context (aclrtGetCurrentContext) and every off-thread piece of work starts with
// aclrtSetCurrentContext. MOE_NPU_BRIDGE_SKIP_CONTEXT=1 skips that, only to prove the rule in tests.
//
// The op libraries are searched as CANN's own loader does: the custom op packages of the vendors
// first (ASCEND_CUSTOM_OPP_PATH, then $ASCEND_OPP_PATH/vendors/config.ini's load_priority), then
// $ASCEND_HOME_PATH/lib64/libopapi_transformer.so and the other libopapi_*.so, then libopapi.so;
// each op comes from the first library that exports both of its functions, and load() says which.
//
// The V2 ops are chosen as torch_npu chooses them (v2-contract §2.1: op-plugin's
// check_aclnn_kernel_available): aclnnMoeDistributeDispatchV4 if some op library exports it (with its
// GetWorkspaceSize), else V3, else V2, and the same for combine, each on its own; load() names the
// version found. The two families are independent: CANN is available when either is complete (an A3
// CANN ships the V2 ops, the public sources build the setup/teardown ops for ascend950 only), and
// load() says why the other cannot run (`missing`); runOp refuses an op that was not found.
#include <napi.h>

#include <dlfcn.h>
#include <link.h>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

// ---- the C ABI we use, declared from the public headers ---------------------------------------

using aclError = int;
using aclnnStatus = int32_t;
using HcclResult = int;
using aclrtStream = void*;
using aclrtContext = void*;
using HcclComm = void*;
struct aclTensor;
struct aclOpExecutor;

constexpr int kAclFormatNd = 2;           // aclFormat ACL_FORMAT_ND
constexpr int kMemMallocHugeFirst = 0;    // aclrtMemMallocPolicy ACL_MEM_MALLOC_HUGE_FIRST
constexpr int kMemcpyHostToDevice = 1;    // aclrtMemcpyKind ACL_MEMCPY_HOST_TO_DEVICE
constexpr int kMemcpyDeviceToHost = 2;    // aclrtMemcpyKind ACL_MEMCPY_DEVICE_TO_HOST
constexpr size_t kRootInfoBytes = 4108;   // HCCL_ROOT_INFO_BYTES
constexpr size_t kCommNameBytes = 128;    // group name max length (COMM_NAME_MAX_LENGTH)
constexpr int kStreamSyncTimeout = 507046;  // ACL_ERROR_RT_STREAM_SYNC_TIMEOUT (rt_error_codes.h)

using FnAclInit = aclError (*)(const char*);
using FnAclFinalize = aclError (*)();
using FnSetDevice = aclError (*)(int32_t);
using FnResetDevice = aclError (*)(int32_t);
using FnCreateStream = aclError (*)(aclrtStream*);
using FnDestroyStream = aclError (*)(aclrtStream);
using FnSyncStreamTimeout = aclError (*)(aclrtStream, int32_t);
using FnGetContext = aclError (*)(aclrtContext*);
using FnSetContext = aclError (*)(aclrtContext);
using FnMemset = aclError (*)(void*, size_t, int32_t, size_t);
using FnSocName = const char* (*)();
using FnDeviceCount = aclError (*)(uint32_t*);
using FnMalloc = aclError (*)(void**, size_t, int);
using FnFree = aclError (*)(void*);
using FnMemcpy = aclError (*)(void*, size_t, const void*, size_t, int);
using FnRecentErrMsg = const char* (*)();
using FnCreateTensor = aclTensor* (*)(const int64_t*, uint64_t, int, const int64_t*, int64_t, int, const int64_t*,
                                      uint64_t, void*);
using FnDestroyTensor = aclnnStatus (*)(const aclTensor*);
using FnGetRootInfo = HcclResult (*)(void*);
using FnCommInitRootInfo = HcclResult (*)(uint32_t, const void*, uint32_t, HcclComm*);
using FnCommInitClusterInfo = HcclResult (*)(const char*, uint32_t, HcclComm*);
using FnGetCommName = HcclResult (*)(HcclComm, char*);
using FnCommDestroy = HcclResult (*)(HcclComm);
using FnLaunch = aclnnStatus (*)(void*, uint64_t, aclOpExecutor*, aclrtStream);

using T = const aclTensor*;
using O = aclTensor*;
using FnDispatchSetupWs = aclnnStatus (*)(T, T, T, T, const char*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, int64_t, int64_t, const char*, O, O, O, uint64_t*, aclOpExecutor**);
using FnDispatchTeardownWs = aclnnStatus (*)(T, T, T, T, const char*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                             int64_t, int64_t, int64_t, int64_t, int64_t, char*, O, O, O, O, uint64_t*,
                                             aclOpExecutor**);
using FnCombineSetupWs = aclnnStatus (*)(T, T, T, const char*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         int64_t, int64_t, int64_t, const char*, O, O, uint64_t*, aclOpExecutor**);
using FnCombineTeardownWs = aclnnStatus (*)(T, T, T, T, T, T, T, T, const char*, int64_t, int64_t, int64_t, int64_t,
                                            int64_t, int64_t, int64_t, int64_t, int64_t, const char*, O, uint64_t*,
                                            aclOpExecutor**);
// The V2 ops (op_api/aclnn_moe_distribute_{dispatch,combine}_v2.h, _v3.h, _v4.h; v2-contract §2.2).
// V3 adds elasticInfo after expertScales (combine: elasticInfo, oriX, constExpertAlpha1/2, constExpertV
// after sharedExpertX) and zero/copy/constExpertNum after commAlg; V4 adds performanceInfo after
// elasticInfo (combine: after constExpertV).
using S = const char*;
using I = int64_t;
using FnDispatchV2Ws = aclnnStatus (*)(T, T, T, T, T, S, I, I, I, S, I, I, I, I, I, I, I, I, S, O, O, O, O, O, O, O,
                                       uint64_t*, aclOpExecutor**);
using FnDispatchV3Ws = aclnnStatus (*)(T, T, T, T, T, T, S, I, I, I, S, I, I, I, I, I, I, I, I, S, I, I, I, O, O, O, O,
                                       O, O, O, uint64_t*, aclOpExecutor**);
using FnDispatchV4Ws = aclnnStatus (*)(T, T, T, T, T, T, T, S, I, I, I, S, I, I, I, I, I, I, I, I, S, I, I, I, O, O, O,
                                       O, O, O, O, uint64_t*, aclOpExecutor**);
using FnCombineV2Ws = aclnnStatus (*)(T, T, T, T, T, T, T, T, T, T, T, T, S, I, I, I, S, I, I, I, I, I, I, I, I, I, S, O,
                                      uint64_t*, aclOpExecutor**);
using FnCombineV3Ws = aclnnStatus (*)(T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, S, I, I, I, S, I, I, I, I, I, I,
                                      I, I, I, S, I, I, I, O, uint64_t*, aclOpExecutor**);
using FnCombineV4Ws = aclnnStatus (*)(T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, S, I, I, I, S, I, I, I, I,
                                      I, I, I, I, I, S, I, I, I, O, uint64_t*, aclOpExecutor**);
// The size helpers (op_api/aclnn_moe_distribute_{dispatch,combine}_setup.h) take their results by
// C++ reference (uint64_t&), which the ABI passes as a pointer.
using FnDispatchSizes = aclnnStatus (*)(T, T, T, T, const char*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                        int64_t, int64_t, int64_t, int64_t, const char*, uint64_t*, uint64_t*, uint64_t*,
                                        uint64_t*);
using FnCombineSizes = aclnnStatus (*)(T, T, T, const char*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                       int64_t, int64_t, int64_t, const char*, uint64_t*, uint64_t*);

// Where an op's functions were found.
struct OpSource {
  std::string library;      // path of the library both functions came from ("" when not found)
  std::string sizeHelper;   // the size helper's name, when that same library exports it
  std::string name;         // the aclnn name called (the V2 ops: the version found)
  int version = 0;          // the V2 ops: 4, 3 or 2; the family's ops: 0
};

struct Cann {
  bool available = false;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> libraries;  // role -> path loaded
  std::vector<void*> handles;

  FnAclInit aclInit = nullptr;
  FnAclFinalize aclFinalize = nullptr;
  FnSetDevice aclrtSetDevice = nullptr;
  FnResetDevice aclrtResetDevice = nullptr;
  FnCreateStream aclrtCreateStream = nullptr;
  FnDestroyStream aclrtDestroyStream = nullptr;
  FnSyncStreamTimeout aclrtSynchronizeStreamWithTimeout = nullptr;
  FnGetContext aclrtGetCurrentContext = nullptr;
  FnSetContext aclrtSetCurrentContext = nullptr;
  FnMemset aclrtMemset = nullptr;
  FnSocName aclrtGetSocName = nullptr;  // optional: only for messages
  FnDeviceCount aclrtGetDeviceCount = nullptr;
  FnMalloc aclrtMalloc = nullptr;
  FnFree aclrtFree = nullptr;
  FnMemcpy aclrtMemcpy = nullptr;
  FnRecentErrMsg aclGetRecentErrMsg = nullptr;
  FnCreateTensor aclCreateTensor = nullptr;
  FnDestroyTensor aclDestroyTensor = nullptr;
  FnGetRootInfo HcclGetRootInfo = nullptr;
  FnCommInitRootInfo HcclCommInitRootInfo = nullptr;
  FnCommInitClusterInfo HcclCommInitClusterInfo = nullptr;
  FnGetCommName HcclGetCommName = nullptr;
  FnCommDestroy HcclCommDestroy = nullptr;
  FnDispatchSetupWs dispatchSetupWs = nullptr;
  FnLaunch dispatchSetup = nullptr;
  FnDispatchTeardownWs dispatchTeardownWs = nullptr;
  FnLaunch dispatchTeardown = nullptr;
  FnCombineSetupWs combineSetupWs = nullptr;
  FnLaunch combineSetup = nullptr;
  FnCombineTeardownWs combineTeardownWs = nullptr;
  FnLaunch combineTeardown = nullptr;
  FnDispatchSizes dispatchSizes = nullptr;
  FnCombineSizes combineSizes = nullptr;
  // the V2 ops' GetWorkspaceSize, of the signature of ops[4 or 5].version (cast at the call)
  void* dispatchV2Ws = nullptr;
  FnLaunch dispatchV2 = nullptr;
  void* combineV2Ws = nullptr;
  FnLaunch combineV2 = nullptr;
  OpSource ops[6];            // in OpKind order
  std::vector<std::string> opLibraries;  // the op libraries loaded, in search order
  std::string missingSetup;   // why the setup/teardown family cannot run ("" when all four ops were found)
  std::string missingV2;      // why the V2 ops cannot run ("" when both were found)
};

Cann g_cann;
bool g_loadAttempted = false;
std::string g_loadKey;      // home and the vendor variables the last load used
std::mutex g_mutex;

// The per-process device state (one rank per process).
struct Device {
  bool aclInited = false;
  bool deviceSet = false;
  int32_t deviceId = -1;
  aclrtStream stream = nullptr;
  aclrtContext context = nullptr;  // the device's context, made current on every worker thread
  HcclComm comm = nullptr;
  std::string commName;
};
Device g_dev;

// The SoC name, for messages ("" when CANN cannot tell yet).
std::string socName() {
  if (!g_cann.aclrtGetSocName) return "";
  const char* s = g_cann.aclrtGetSocName();
  return s ? s : "";
}

// Makes the device's context current on the calling (pool) thread. Returns the status.
aclError useContext() {
  static const bool skip = [] {
    const char* v = getenv("MOE_NPU_BRIDGE_SKIP_CONTEXT");
    return v && std::string(v) == "1";
  }();
  if (skip || !g_dev.context) return 0;
  return g_cann.aclrtSetCurrentContext(g_dev.context);
}

std::string dlerr() {
  const char* e = dlerror();
  return e ? e : "unknown dlopen error";
}

bool fileExists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// CANN's library directories under $ASCEND_HOME_PATH.
std::vector<std::string> homeLibDirs(const std::string& home) {
  if (home.empty()) return {};
  return {home + "/lib64", home + "/lib",
#if defined(__aarch64__)
          home + "/aarch64-linux/lib64"
#else
          home + "/x86_64-linux/lib64"
#endif
  };
}

// Every library is opened RTLD_LOCAL: the op libraries export the same aclnn names, and a global
// namespace would let the first one loaded shadow the others' symbols (CANN's loader keeps them
// apart the same way).
void* openPath(const std::string& p, std::string* tried) {
  dlerror();
  void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    if (!tried->empty()) *tried += "; ";
    *tried += p + ": " + dlerr();
  }
  return h;
}

// Tries each name under $ASCEND_HOME_PATH's library directories, then through the loader's own
// search path (LD_LIBRARY_PATH, ld.so.cache). Returns the handle or nullptr with `tried` filled.
void* openLibrary(const std::string& home, const std::vector<std::string>& names, std::string* path,
                  std::string* tried) {
  for (const auto& name : names) {
    for (const auto& d : homeLibDirs(home)) {
      std::string p = d + "/" + name;
      if (void* h = openPath(p, tried)) {
        *path = p;
        return h;
      }
    }
    if (void* h = openPath(name, tried)) {
      *path = name;
      return h;
    }
  }
  return nullptr;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(sep, pos);
    std::string item = s.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    size_t a = item.find_first_not_of(" \t\r"), b = item.find_last_not_of(" \t\r");
    if (a != std::string::npos) out.push_back(item.substr(a, b - a + 1));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return out;
}

// The vendors of $ASCEND_OPP_PATH/vendors/config.ini, highest priority first: the line
// `load_priority=a,b` (older packages write `priority=`), as CANN's opbase reads it.
std::vector<std::string> configVendors(const std::string& oppPath) {
  std::ifstream in(oppPath + "/vendors/config.ini");
  std::string line;
  while (std::getline(in, line)) {
    size_t a = line.find_first_not_of(" \t");
    if (a == std::string::npos || line[a] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(a, eq - a);
    key.erase(key.find_last_not_of(" \t") + 1);
    if (key == "load_priority" || key == "priority") return split(line.substr(eq + 1), ',');
  }
  return {};
}

// The op libraries in CANN's search order (see the file comment). Each entry of
// ASCEND_CUSTOM_OPP_PATH is a vendor directory (<path>/vendors/<name>) or a dynamic-library
// directory (<path>/op_api/lib); both forms are accepted, as CANN's documentation shows.
std::vector<std::string> opLibraryCandidates(const std::string& home, const std::string& oppPathIn,
                                             const std::string& customOppPath) {
  std::vector<std::string> out;
  auto add = [&](const std::string& p) {
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  };
  for (const auto& e : split(customOppPath, ':')) {
    if (fileExists(e + "/op_api/lib/libcust_opapi.so")) add(e + "/op_api/lib/libcust_opapi.so");
    else if (fileExists(e + "/libcust_opapi.so")) add(e + "/libcust_opapi.so");
  }
  std::string oppPath = !oppPathIn.empty() ? oppPathIn : home.empty() ? "" : home + "/opp";
  if (!oppPath.empty()) {
    for (const auto& v : configVendors(oppPath)) {
      std::string p = oppPath + "/vendors/" + v + "/op_api/lib/libcust_opapi.so";
      if (fileExists(p)) add(p);
    }
  }
  for (const auto& d : homeLibDirs(home)) {
    if (fileExists(d + "/libopapi_transformer.so")) add(d + "/libopapi_transformer.so");
  }
  for (const auto& d : homeLibDirs(home)) {
    std::vector<std::string> siblings;
    if (DIR* dir = opendir(d.c_str())) {
      while (dirent* ent = readdir(dir)) {
        std::string n = ent->d_name;
        if (n.rfind("libopapi_", 0) == 0 && n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0 &&
            n != "libopapi_transformer.so") {
          siblings.push_back(d + "/" + n);
        }
      }
      closedir(dir);
    }
    std::sort(siblings.begin(), siblings.end());
    for (const auto& p : siblings) add(p);
  }
  for (const auto& d : homeLibDirs(home)) {
    if (fileExists(d + "/libopapi.so")) add(d + "/libopapi.so");
  }
  return out;
}

template <typename F>
bool resolve(Cann& c, const std::vector<void*>& hs, const char* name, const char* lib, F* out) {
  for (void* h : hs) {
    dlerror();
    void* s = dlsym(h, name);
    if (s) {
      *out = reinterpret_cast<F>(s);
      return true;
    }
  }
  c.reason = std::string("symbol ") + name + " not found in " + lib;
  return false;
}

// `name` when `h`'s own object defines it. dlsym(h, ...) also searches h's dependencies, and a
// vendor's libcust_opapi.so may depend on a library that exports the same op: that op is not the
// vendor's.
void* ownSymbol(void* h, const char* name) {
  dlerror();
  void* s = dlsym(h, name);
  if (!s) return nullptr;
  link_map* mine = nullptr;
  link_map* where = nullptr;
  Dl_info di;
  if (dlinfo(h, RTLD_DI_LINKMAP, &mine) != 0 || !dladdr1(s, &di, reinterpret_cast<void**>(&where), RTLD_DL_LINKMAP)) {
    return s;  // cannot tell: take it
  }
  return where == mine ? s : nullptr;
}

const char* const kOpNames[4] = {"aclnnMoeDistributeDispatchSetup", "aclnnMoeDistributeDispatchTeardown",
                                 "aclnnMoeDistributeCombineSetup", "aclnnMoeDistributeCombineTeardown"};
const char* const kSizeHelpers[4] = {"aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize", nullptr,
                                     "aclnnMoeDistributeCombineSetupTeardownCalcOutputSize", nullptr};

// An Ascend 950 (arch35) SoC: Ascend950PR_9599, Ascend950DT_..., or the Ascend910_95 series
// (torchair's is_arch35 reads the names so; src/npu/bridge.ts socPlatform is the same rule).
bool socIs950(const std::string& soc) {
  return soc.rfind("Ascend950", 0) == 0 || soc.rfind("Ascend910_95", 0) == 0;
}

std::string socAndLibrary(const std::string& soc, const std::string& library) {
  return "SoC " + (soc.empty() ? std::string("<unknown: aclrtGetSocName gave nothing>") : soc) + ", library " +
         (library.empty() ? std::string("<none>") : library);
}

// The message for an op this CANN cannot run: one place, used at load and at GetWorkspaceSize.
// The public sources build these ops for ascend950 only (op-contract-950.md §S: the defs register
// ascend950, the arch35 tilings run on DAV_3510 only), so on any other SoC the binary must come from
// a release that ships them; on a 950 a missing op means the install lacks ops-transformer's.
std::string missingOpsMessage(const std::string& soc, const std::string& library) {
  if (socIs950(soc)) {
    return socAndLibrary(soc, library) +
           ": this Ascend 950's CANN lacks the MoE distribute setup/teardown ops, which ops-transformer builds for "
           "ascend950 (its op_api library, libopapi_transformer.so)";
  }
  return socAndLibrary(soc, library) +
         ": the public CANN sources build the MoE distribute setup/teardown ops for ascend950 only (comm_type 2), "
         "so an A3 host needs a CANN release whose binary ships them";
}

// GetWorkspaceSize refused on a 950, where the binary is the one the 950 contract reads: 561003 is
// a tiling key without a kernel (§2.4: quant mode 1 has no dispatch_teardown kernel, modes 0 and 4
// none with scales), 161002 and 561002 the API's and the tilings' refusals of a parameter (§7).
std::string refused950Message(const std::string& soc, const std::string& library, int64_t status) {
  if (status == 561003) {
    return socAndLibrary(soc, library) +
           ": the 950 binary has no kernel for this call's tiling key (quant mode 1 has no dispatch_teardown kernel, "
           "quant modes 0 and 4 none with scales: op-contract-950 §2.4)";
  }
  return socAndLibrary(soc, library) +
         ": the 950 API or tiling refused a parameter (comm_type must be 2; end to end the combine tilings take only "
         "epWorldSize 2, 4 or 8, moeExpertNum 32, no shared experts, BS 8, 16 or 256, H 4096 or 7168, K 6 or 8: "
         "op-contract-950 §7); aclGetRecentErrMsg names it";
}

void loadCann(const std::string& home, const std::string& oppPath, const std::string& customOppPath) {
  Cann c;
  struct Role {
    const char* role;
    std::vector<std::string> names;
  };
  const std::vector<Role> roles = {
      {"ascendcl", {"libascendcl.so", "libacl_rt.so"}},
      {"nnopbase", {"libnnopbase.so"}},
      {"hccl", {"libhccl.so"}},
  };
  std::vector<std::vector<void*>> byRole;
  // the op libraries: every candidate that loads, in search order; libopapi.so through the
  // loader's path as a last resort. Searched before libhccl so that a CANN without the ops says so.
  std::vector<void*> opapi;
  auto findOpLibraries = [&]() -> bool {
    std::string tried;
    for (const auto& p : opLibraryCandidates(home, oppPath, customOppPath)) {
      if (void* h = openPath(p, &tried)) {
        opapi.push_back(h);
        c.opLibraries.push_back(p);
        c.libraries.emplace_back("opapi", p);
        c.handles.push_back(h);
      }
    }
    if (opapi.empty()) {
      for (const char* n : {"libopapi.so", "libopapi_transformer.so", "libcust_opapi.so"}) {
        if (void* h = openPath(n, &tried)) {
          opapi.push_back(h);
          c.opLibraries.push_back(n);
          c.libraries.emplace_back("opapi", n);
          c.handles.push_back(h);
          break;
        }
      }
    }
    if (!opapi.empty()) return true;
    c.reason = "CANN library libopapi.so or libopapi_transformer.so or libcust_opapi.so not found (ASCEND_HOME_PATH=" +
               (home.empty() ? std::string("<unset>") : home) + "); tried " + (tried.empty() ? "nothing" : tried);
    return false;
  };
  for (const auto& r : roles) {
    if (std::string(r.role) == "hccl" && !findOpLibraries()) {
      g_cann = c;
      return;
    }
    std::string tried, path;
    void* h = openLibrary(home, r.names, &path, &tried);
    if (!h) {
      std::string names;
      for (const auto& n : r.names) names += (names.empty() ? "" : " or ") + n;
      c.reason = "CANN library " + names + " not found (ASCEND_HOME_PATH=" + (home.empty() ? "<unset>" : home) +
                 "); tried " + tried;
      g_cann = c;
      return;
    }
    c.libraries.emplace_back(r.role, path);
    c.handles.push_back(h);
    byRole.push_back({h});
  }
  const auto& acl = byRole[0];
  const auto& nnop = byRole[1];
  const auto& hccl = byRole[2];
  bool ok = resolve(c, acl, "aclInit", "libascendcl", &c.aclInit) &&
            resolve(c, acl, "aclFinalize", "libascendcl", &c.aclFinalize) &&
            resolve(c, acl, "aclrtSetDevice", "libascendcl", &c.aclrtSetDevice) &&
            resolve(c, acl, "aclrtResetDevice", "libascendcl", &c.aclrtResetDevice) &&
            resolve(c, acl, "aclrtGetCurrentContext", "libascendcl", &c.aclrtGetCurrentContext) &&
            resolve(c, acl, "aclrtSetCurrentContext", "libascendcl", &c.aclrtSetCurrentContext) &&
            resolve(c, acl, "aclrtCreateStream", "libascendcl", &c.aclrtCreateStream) &&
            resolve(c, acl, "aclrtDestroyStream", "libascendcl", &c.aclrtDestroyStream) &&
            resolve(c, acl, "aclrtSynchronizeStreamWithTimeout", "libascendcl", &c.aclrtSynchronizeStreamWithTimeout) &&
            resolve(c, acl, "aclrtMalloc", "libascendcl", &c.aclrtMalloc) &&
            resolve(c, acl, "aclrtFree", "libascendcl", &c.aclrtFree) &&
            resolve(c, acl, "aclrtMemcpy", "libascendcl", &c.aclrtMemcpy) &&
            resolve(c, acl, "aclrtMemset", "libascendcl", &c.aclrtMemset) &&
            resolve(c, acl, "aclrtGetDeviceCount", "libascendcl", &c.aclrtGetDeviceCount) &&
            resolve(c, acl, "aclGetRecentErrMsg", "libascendcl", &c.aclGetRecentErrMsg) &&
            resolve(c, nnop, "aclCreateTensor", "libnnopbase", &c.aclCreateTensor) &&
            resolve(c, nnop, "aclDestroyTensor", "libnnopbase", &c.aclDestroyTensor) &&
            resolve(c, hccl, "HcclGetRootInfo", "libhccl", &c.HcclGetRootInfo) &&
            resolve(c, hccl, "HcclCommInitRootInfo", "libhccl", &c.HcclCommInitRootInfo) &&
            resolve(c, hccl, "HcclCommInitClusterInfo", "libhccl", &c.HcclCommInitClusterInfo) &&
            resolve(c, hccl, "HcclGetCommName", "libhccl", &c.HcclGetCommName) &&
            resolve(c, hccl, "HcclCommDestroy", "libhccl", &c.HcclCommDestroy);
  if (!ok) {
    g_cann = c;
    return;
  }
  dlerror();
  c.aclrtGetSocName = reinterpret_cast<FnSocName>(dlsym(acl[0], "aclrtGetSocName"));
  const std::string soc = c.aclrtGetSocName ? (c.aclrtGetSocName() ? c.aclrtGetSocName() : "") : "";
  std::string libs;
  for (const auto& l : c.opLibraries) libs += (libs.empty() ? "" : ", ") + l;
  // the family's ops: each from the first op library exporting both of its functions
  void* wsFns[4] = {};
  void* runFns[4] = {};
  for (int k = 0; k < 4; k++) {
    std::string ws = std::string(kOpNames[k]) + "GetWorkspaceSize";
    for (size_t i = 0; i < opapi.size(); i++) {
      void* a = ownSymbol(opapi[i], ws.c_str());
      void* b = ownSymbol(opapi[i], kOpNames[k]);
      if (a && b) {
        wsFns[k] = a;
        runFns[k] = b;
        c.ops[k].library = c.opLibraries[i];
        c.ops[k].name = kOpNames[k];
        if (kSizeHelpers[k]) {
          void* h = ownSymbol(opapi[i], kSizeHelpers[k]);
          if (h) {
            c.ops[k].sizeHelper = kSizeHelpers[k];
            if (k == 0) c.dispatchSizes = reinterpret_cast<FnDispatchSizes>(h);
            else c.combineSizes = reinterpret_cast<FnCombineSizes>(h);
          }
        }
        break;
      }
    }
    if (!wsFns[k] && c.missingSetup.empty()) {
      c.missingSetup = std::string(kOpNames[k]) + " (with " + kOpNames[k] + "GetWorkspaceSize) is in none of the op libraries [" +
                       libs + "]; " + missingOpsMessage(soc, libs);
    }
  }
  if (c.missingSetup.empty()) {
    c.dispatchSetupWs = reinterpret_cast<FnDispatchSetupWs>(wsFns[0]);
    c.dispatchSetup = reinterpret_cast<FnLaunch>(runFns[0]);
    c.dispatchTeardownWs = reinterpret_cast<FnDispatchTeardownWs>(wsFns[1]);
    c.dispatchTeardown = reinterpret_cast<FnLaunch>(runFns[1]);
    c.combineSetupWs = reinterpret_cast<FnCombineSetupWs>(wsFns[2]);
    c.combineSetup = reinterpret_cast<FnLaunch>(runFns[2]);
    c.combineTeardownWs = reinterpret_cast<FnCombineTeardownWs>(wsFns[3]);
    c.combineTeardown = reinterpret_cast<FnLaunch>(runFns[3]);
  } else {
    for (int k = 0; k < 4; k++) c.ops[k] = OpSource();  // a family runs whole or not at all
    c.dispatchSizes = nullptr;
    c.combineSizes = nullptr;
  }
  // the V2 ops: V4, else V3, else V2 (torch_npu's order, v2-contract §2.1), each version searched
  // through the op libraries in CANN's order
  for (int k = 4; k < 6; k++) {
    const std::string base = k == 4 ? "aclnnMoeDistributeDispatch" : "aclnnMoeDistributeCombine";
    for (int v = 4; v >= 2 && c.ops[k].version == 0; v--) {
      const std::string name = base + "V" + std::to_string(v);
      const std::string ws = name + "GetWorkspaceSize";
      for (size_t i = 0; i < opapi.size(); i++) {
        void* a = ownSymbol(opapi[i], ws.c_str());
        void* b = ownSymbol(opapi[i], name.c_str());
        if (!a || !b) continue;
        c.ops[k].library = c.opLibraries[i];
        c.ops[k].name = name;
        c.ops[k].version = v;
        (k == 4 ? c.dispatchV2Ws : c.combineV2Ws) = a;
        (k == 4 ? c.dispatchV2 : c.combineV2) = reinterpret_cast<FnLaunch>(b);
        break;
      }
    }
    if (c.ops[k].version == 0 && c.missingV2.empty()) {
      c.missingV2 = base + "V4, V3 or V2 (with its GetWorkspaceSize) is in none of the op libraries [" + libs + "]; " +
                    socAndLibrary(soc, libs) +
                    ": CANN's ops-transformer builds the V2 ops for Atlas A2 and A3 (ascend910b, ascend910_93; v2-contract "
                    "§12.1), so this CANN predates them or lacks ops-transformer";
    }
  }
  if (!c.missingV2.empty()) {
    c.ops[4] = c.ops[5] = OpSource();
    c.dispatchV2Ws = c.combineV2Ws = nullptr;
    c.dispatchV2 = c.combineV2 = nullptr;
  }
  c.available = c.missingSetup.empty() || c.missingV2.empty();
  c.reason = c.available ? "" : c.missingSetup + "; and " + c.missingV2;
  g_cann = c;
}

// ---- errors -----------------------------------------------------------------------------------

struct Failure {
  bool failed = false;
  std::string api;
  int64_t status = 0;
  std::string cannMessage;
  std::string detail;
};

std::string recentErrMsg() {
  if (!g_cann.aclGetRecentErrMsg) return "";
  const char* m = g_cann.aclGetRecentErrMsg();
  return m ? m : "";
}

const char* statusName(int64_t s) {
  switch (s) {
    case 107002: return "ACL_ERROR_RT_CONTEXT_NULL";
    case 507046: return "ACL_ERROR_RT_STREAM_SYNC_TIMEOUT";
    case 161001: return "ACLNN_ERR_PARAM_NULLPTR";
    case 161002: return "ACLNN_ERR_PARAM_INVALID";
    case 361001: return "ACLNN_ERR_RUNTIME_ERROR";
    case 561000: return "ACLNN_ERR_INNER";
    case 561001: return "ACLNN_ERR_INNER_INFERSHAPE_ERROR";
    case 561002: return "ACLNN_ERR_INNER_TILING_ERROR";
    case 561003: return "ACLNN_ERR_INNER_FIND_KERNEL_ERROR";
    default: return nullptr;
  }
}

void fail(Failure* f, const std::string& api, int64_t status, const std::string& detail = "") {
  if (f->failed) return;  // keep the first failure; cleanup errors after it are not the cause
  f->failed = true;
  f->api = api;
  f->status = status;
  f->cannMessage = recentErrMsg();
  f->detail = detail;
}

Napi::Error toJsError(Napi::Env env, const Failure& f, const std::string& op) {
  std::string msg = (op.empty() ? "" : op + ": ") + f.api + " failed with status " + std::to_string(f.status);
  if (const char* n = statusName(f.status)) msg += std::string(" (") + n + ")";
  if (!f.detail.empty()) msg += ": " + f.detail;
  msg += f.cannMessage.empty() ? "; aclGetRecentErrMsg: <empty>" : "; aclGetRecentErrMsg: " + f.cannMessage;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Value().Set("name", Napi::String::New(env, "NpuError"));
  e.Value().Set("api", Napi::String::New(env, f.api));
  e.Value().Set("status", Napi::Number::New(env, static_cast<double>(f.status)));
  e.Value().Set("cannMessage", Napi::String::New(env, f.cannMessage));
  if (!op.empty()) e.Value().Set("op", Napi::String::New(env, op));
  return e;
}

void requireAvailable(Napi::Env env) {
  if (!g_cann.available) {
    std::string why = g_loadAttempted ? g_cann.reason : "load() was not called";
    throw Napi::Error::New(env, "CANN is not available: " + why);
  }
}

// ---- load, device, communicator -----------------------------------------------------------------

// load(home, {oppPath, customOppPath}): loads CANN; again when the arguments change and no device
// is in use yet (a process that has set its device keeps its libraries).
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mutex);
  std::string home = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  std::string oppPath, customOppPath;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (o.Get("oppPath").IsString()) oppPath = o.Get("oppPath").As<Napi::String>().Utf8Value();
    if (o.Get("customOppPath").IsString()) customOppPath = o.Get("customOppPath").As<Napi::String>().Utf8Value();
  }
  std::string key = home + '\n' + oppPath + '\n' + customOppPath;
  if (!g_loadAttempted || (!g_dev.aclInited && (key != g_loadKey || !g_cann.available))) {
    loadCann(home, oppPath, customOppPath);
    g_loadAttempted = true;
    g_loadKey = key;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("available", Napi::Boolean::New(env, g_cann.available));
  if (!g_cann.available) out.Set("reason", Napi::String::New(env, g_cann.reason));
  Napi::Object libs = Napi::Object::New(env);
  for (const auto& [role, path] : g_cann.libraries) {
    if (!libs.Has(role)) libs.Set(role, Napi::Array::New(env));
    Napi::Array a = libs.Get(role).As<Napi::Array>();
    a.Set(a.Length(), Napi::String::New(env, path));
  }
  out.Set("libraries", libs);
  if (g_cann.available) {
    // the ops found (a family whose ops are not all there is left out, and `missing` says why)
    static const char* const kKeys[6] = {"dispatchSetup", "dispatchTeardown", "combineSetup", "combineTeardown", "dispatchV2", "combineV2"};
    Napi::Object ops = Napi::Object::New(env);
    for (int k = 0; k < 6; k++) {
      if (g_cann.ops[k].library.empty()) continue;
      Napi::Object o = Napi::Object::New(env);
      o.Set("library", Napi::String::New(env, g_cann.ops[k].library));
      o.Set("sizeHelper", g_cann.ops[k].sizeHelper.empty() ? env.Null() : Napi::String::New(env, g_cann.ops[k].sizeHelper));
      if (g_cann.ops[k].version) {
        o.Set("name", Napi::String::New(env, g_cann.ops[k].name));
        o.Set("version", Napi::Number::New(env, g_cann.ops[k].version));
      }
      ops.Set(kKeys[k], o);
    }
    out.Set("ops", ops);
    Napi::Object missing = Napi::Object::New(env);
    if (!g_cann.missingSetup.empty()) missing.Set("setup", Napi::String::New(env, g_cann.missingSetup));
    if (!g_cann.missingV2.empty()) missing.Set("v2", Napi::String::New(env, g_cann.missingV2));
    out.Set("missing", missing);
  }
  std::string soc = socName();
  out.Set("soc", soc.empty() ? env.Null() : Napi::String::New(env, soc));
  return out;
}

// init(deviceId): aclInit, aclrtSetDevice, aclrtCreateStream (synchronous: a few ms, once).
Napi::Value InitDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireAvailable(env);
  int32_t dev = info[0].As<Napi::Number>().Int32Value();
  Failure f;
  aclError s;
  if (!g_dev.aclInited) {
    if ((s = g_cann.aclInit(nullptr)) != 0) fail(&f, "aclInit", s);
    else g_dev.aclInited = true;
  }
  if (!f.failed && !g_dev.deviceSet) {
    if ((s = g_cann.aclrtSetDevice(dev)) != 0) fail(&f, "aclrtSetDevice", s, "device " + std::to_string(dev));
    else {
      g_dev.deviceSet = true;
      g_dev.deviceId = dev;
    }
  }
  // the context aclrtSetDevice made current here, for the worker threads (see the file comment)
  if (!f.failed && !g_dev.context) {
    if ((s = g_cann.aclrtGetCurrentContext(&g_dev.context)) != 0) fail(&f, "aclrtGetCurrentContext", s);
  }
  if (!f.failed && !g_dev.stream) {
    if ((s = g_cann.aclrtCreateStream(&g_dev.stream)) != 0) fail(&f, "aclrtCreateStream", s);
  }
  if (f.failed) throw toJsError(env, f, "");
  return env.Undefined();
}

Napi::Value GetRootInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireAvailable(env);
  Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, kRootInfoBytes);
  std::memset(buf.Data(), 0, kRootInfoBytes);
  HcclResult s = g_cann.HcclGetRootInfo(buf.Data());
  if (s != 0) {
    Failure f;
    fail(&f, "HcclGetRootInfo", s);
    throw toJsError(env, f, "");
  }
  return buf;
}

// The communicator joins block until every rank has joined: they run on a worker thread.
class CommInitWorker : public Napi::AsyncWorker {
 public:
  CommInitWorker(Napi::Env env, std::vector<uint8_t> rootInfo, uint32_t nRanks, uint32_t rank, std::string rankTable)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), rootInfo_(std::move(rootInfo)),
        nRanks_(nRanks), rank_(rank), rankTable_(std::move(rankTable)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void join() {
    HcclComm comm = nullptr;
    HcclResult s;
    if (rankTable_.empty()) {
      s = g_cann.HcclCommInitRootInfo(nRanks_, rootInfo_.data(), rank_, &comm);
      if (s != 0) return fail(&f_, "HcclCommInitRootInfo", s, "rank " + std::to_string(rank_) + " of " + std::to_string(nRanks_));
    } else {
      s = g_cann.HcclCommInitClusterInfo(rankTable_.c_str(), rank_, &comm);
      if (s != 0) return fail(&f_, "HcclCommInitClusterInfo", s, "rank table " + rankTable_ + ", rank " + std::to_string(rank_));
    }
    char name[kCommNameBytes + 1] = {0};
    s = g_cann.HcclGetCommName(comm, name);
    if (s != 0) {
      fail(&f_, "HcclGetCommName", s);
      g_cann.HcclCommDestroy(comm);
      return;
    }
    g_dev.comm = comm;
    g_dev.commName = name;
  }
  void Execute() override {
    aclError c = useContext();
    if (c != 0) fail(&f_, "aclrtSetCurrentContext", c, "on the worker thread of the communicator join");
    else join();
    if (f_.failed) SetError(f_.api);
  }
  void OnOK() override { deferred_.Resolve(Napi::String::New(Env(), g_dev.commName)); }
  // Execute() marks a failure with SetError; the JS error is built here, on the JS thread.
  void OnError(const Napi::Error&) override { deferred_.Reject(toJsError(Env(), f_, "").Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> rootInfo_;
  uint32_t nRanks_, rank_;
  std::string rankTable_;
  Failure f_;
};

Napi::Value CommInitRootInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireAvailable(env);
  if (g_dev.comm) throw Napi::Error::New(env, "this process already joined a communicator");
  uint32_t n = info[0].As<Napi::Number>().Uint32Value();
  Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
  if (b.Length() != kRootInfoBytes) {
    throw Napi::Error::New(env, "root info should be " + std::to_string(kRootInfoBytes) + " bytes (HcclRootInfo), got " +
                                    std::to_string(b.Length()));
  }
  uint32_t rank = info[2].As<Napi::Number>().Uint32Value();
  auto* w = new CommInitWorker(env, std::vector<uint8_t>(b.Data(), b.Data() + b.Length()), n, rank, "");
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value CommInitClusterInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireAvailable(env);
  if (g_dev.comm) throw Napi::Error::New(env, "this process already joined a communicator");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  uint32_t rank = info[1].As<Napi::Number>().Uint32Value();
  auto* w = new CommInitWorker(env, {}, 0, rank, path);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// finalize(): HcclCommDestroy, aclrtDestroyStream, aclrtResetDevice, aclFinalize; all attempted.
Napi::Value Finalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!g_cann.available) return env.Undefined();
  Failure f;
  int s;
  if (g_dev.comm) {
    if ((s = g_cann.HcclCommDestroy(g_dev.comm)) != 0) fail(&f, "HcclCommDestroy", s);
    g_dev.comm = nullptr;
  }
  if (g_dev.stream) {
    if ((s = g_cann.aclrtDestroyStream(g_dev.stream)) != 0) fail(&f, "aclrtDestroyStream", s);
    g_dev.stream = nullptr;
  }
  if (g_dev.deviceSet) {
    if ((s = g_cann.aclrtResetDevice(g_dev.deviceId)) != 0) fail(&f, "aclrtResetDevice", s);
    g_dev.deviceSet = false;
  }
  if (g_dev.aclInited) {
    if ((s = g_cann.aclFinalize()) != 0) fail(&f, "aclFinalize", s);
    g_dev.aclInited = false;
  }
  if (f.failed) throw toJsError(env, f, "");
  return env.Undefined();
}

// ---- the ops ----------------------------------------------------------------------------------

// A tensor crossing the bridge: aclDataType code, shape, host bytes (inputs) or size (outputs).
struct HostTensor {
  bool present = false;
  int dtype = 0;
  size_t elemBytes = 1;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // input data, or output data after the copy back
  size_t nbytes() const {
    size_t n = elemBytes;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
};

size_t elemBytesOf(int dtype) {
  switch (dtype) {
    case 0: return 4;   // ACL_FLOAT
    case 1: return 2;   // ACL_FLOAT16
    case 2: return 1;   // ACL_INT8
    case 3: return 4;   // ACL_INT32
    case 9: return 8;   // ACL_INT64
    case 12: return 1;  // ACL_BOOL
    case 27: return 2;  // ACL_BF16
    // the 950's one-byte floats (op-contract-950 §1, §11): y and expand_x of quant modes 2 and 4,
    // MX dynamic_scales
    case 35: return 1;  // ACL_FLOAT8_E5M2
    case 36: return 1;  // ACL_FLOAT8_E4M3FN
    case 37: return 1;  // ACL_FLOAT8_E8M0
    default: return 0;
  }
}

// {dtype: number (aclDataType), shape: number[], data?: TypedArray} or null/undefined.
HostTensor readTensor(Napi::Env env, Napi::Value v, bool withData, const std::string& what) {
  HostTensor t;
  if (v.IsNull() || v.IsUndefined()) return t;
  Napi::Object o = v.As<Napi::Object>();
  t.present = true;
  t.dtype = o.Get("dtype").As<Napi::Number>().Int32Value();
  t.elemBytes = elemBytesOf(t.dtype);
  if (t.elemBytes == 0) throw Napi::Error::New(env, what + ": unsupported aclDataType " + std::to_string(t.dtype));
  Napi::Array shape = o.Get("shape").As<Napi::Array>();
  for (uint32_t i = 0; i < shape.Length(); i++) t.shape.push_back(shape.Get(i).As<Napi::Number>().Int64Value());
  if (withData) {
    Napi::TypedArray ta = o.Get("data").As<Napi::TypedArray>();
    size_t n = ta.ByteLength();
    if (n != t.nbytes()) {
      throw Napi::Error::New(env, what + ": data holds " + std::to_string(n) + " bytes, its shape needs " +
                                      std::to_string(t.nbytes()));
    }
    const uint8_t* p = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    t.bytes.assign(p, p + n);
  }
  return t;
}

// Device resources of one op call, released in reverse order whatever happens.
struct DeviceTensor {
  void* dev = nullptr;
  aclTensor* acl = nullptr;
};

enum class OpKind { DispatchSetup, DispatchTeardown, CombineSetup, CombineTeardown, DispatchV2, CombineV2 };

// The aclnn name of an op: the V2 ops by the version load() found (V4, V3 or V2).
const char* opName(OpKind k) {
  switch (k) {
    case OpKind::DispatchSetup: return "aclnnMoeDistributeDispatchSetup";
    case OpKind::DispatchTeardown: return "aclnnMoeDistributeDispatchTeardown";
    case OpKind::CombineSetup: return "aclnnMoeDistributeCombineSetup";
    case OpKind::CombineTeardown: return "aclnnMoeDistributeCombineTeardown";
    case OpKind::DispatchV2: return g_cann.ops[4].name.empty() ? "aclnnMoeDistributeDispatchV2" : g_cann.ops[4].name.c_str();
    case OpKind::CombineV2: return g_cann.ops[5].name.empty() ? "aclnnMoeDistributeCombineV2" : g_cann.ops[5].name.c_str();
  }
  return "";
}

bool isV2(OpKind k) { return k == OpKind::DispatchV2 || k == OpKind::CombineV2; }

// GetWorkspaceSize refused a V2 op. The open A3 path is live (v2-contract §12.1: the A3 tiling
// registers ascend910_93 and runs these kernels), so 161002 and 561002 are the API's and the tiling's
// refusals of a parameter (§8), not a binary built for another SoC; 561003 is a tiling key without a
// kernel in this library's binary.
std::string refusedV2Message(const std::string& soc, const std::string& library, int64_t status) {
  if (status == 561003) {
    return socAndLibrary(soc, library) +
           ": the library's V2 binary has no kernel for this call's tiling key on this SoC (the open sources build the "
           "A3 kernels for ascend910_93 and the A2 ones for ascend910b: v2-contract §9, §12.1)";
  }
  return socAndLibrary(soc, library) +
         ": the V2 API or tiling refused a parameter (v2-contract §8: ranges, shapes of the outputs, HCCL_BUFFSIZE "
         "§7.2); aclGetRecentErrMsg names it";
}

// Per-call options from JS: comm_alg as given, the byte every output is cleared to before the op
// (0, or a poison byte for the probe), and the stream timeout.
struct OpOptions {
  std::string commAlg;
  std::string groupTp;  // the V2 ops' group_tp ("": no TP domain, torch_npu's default)
  int fillByte = 0;
  int32_t timeoutMs = 60000;
};

class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, OpKind kind, std::vector<HostTensor> in, std::vector<HostTensor> out, std::vector<int64_t> ints,
           std::string groupEp, OpOptions opts)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), kind_(kind), in_(std::move(in)),
        out_(std::move(out)), ints_(std::move(ints)), groupEp_(std::move(groupEp)), opts_(std::move(opts)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    aclError c = useContext();
    if (c != 0) {
      fail(&f_, "aclrtSetCurrentContext", c, "on the op's worker thread");
      SetError(f_.api);
      return;
    }
    std::vector<DeviceTensor> din(in_.size()), dout(out_.size());
    void* workspace = nullptr;
    run(din, dout, &workspace);
    // A stream that timed out may still be running the op, which would write into freed memory:
    // its buffers stay allocated (the rank is unusable afterwards anyway).
    if (!timedOut_) release(din, dout, workspace);
    if (f_.failed) SetError(f_.api);
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Array arr = Napi::Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); i++) {
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, out_[i].bytes.size());
      if (!out_[i].bytes.empty()) std::memcpy(ab.Data(), out_[i].bytes.data(), out_[i].bytes.size());
      arr.Set(i, ab);
    }
    deferred_.Resolve(arr);
  }
  void OnError(const Napi::Error&) override {
    Napi::Error e = toJsError(Env(), f_, opName(kind_));
    if (timedOut_) e.Value().Set("timeoutMs", Napi::Number::New(Env(), opts_.timeoutMs));
    if (unsupported_) e.Value().Set("unsupported", Napi::Boolean::New(Env(), true));
    deferred_.Reject(e.Value());
  }

 private:
  // everything, in reverse order of creation; the first failure stays the reported one
  void release(std::vector<DeviceTensor>& din, std::vector<DeviceTensor>& dout, void* workspace) {
    if (workspace) {
      aclError s = g_cann.aclrtFree(workspace);
      if (s != 0) fail(&f_, "aclrtFree", s, "workspace");
    }
    auto rel = [&](std::vector<DeviceTensor>& v) {
      for (size_t i = v.size(); i-- > 0;) {
        if (v[i].acl) {
          aclnnStatus s = g_cann.aclDestroyTensor(v[i].acl);
          if (s != 0) fail(&f_, "aclDestroyTensor", s);
        }
        if (v[i].dev) {
          aclError s = g_cann.aclrtFree(v[i].dev);
          if (s != 0) fail(&f_, "aclrtFree", s);
        }
      }
    };
    rel(dout);
    rel(din);
  }

  bool toDevice(HostTensor& t, DeviceTensor* d, bool copyIn, const std::string& what) {
    if (!t.present) return true;
    size_t n = t.nbytes();
    if (n > 0) {
      aclError s = g_cann.aclrtMalloc(&d->dev, n, kMemMallocHugeFirst);
      if (s != 0) {
        d->dev = nullptr;
        fail(&f_, "aclrtMalloc", s, what + ", " + std::to_string(n) + " bytes");
        return false;
      }
      if (copyIn) {
        s = g_cann.aclrtMemcpy(d->dev, n, t.bytes.data(), n, kMemcpyHostToDevice);
        if (s != 0) {
          fail(&f_, "aclrtMemcpy", s, what + " host to device");
          return false;
        }
      } else {
        // the kernels write only message bytes and received rows (contract §9); clearing the rest
        // makes a dump reproducible, and a poison byte shows the probe what the op wrote
        s = g_cann.aclrtMemset(d->dev, n, opts_.fillByte, n);
        if (s != 0) {
          fail(&f_, "aclrtMemset", s, what + ", " + std::to_string(n) + " bytes to " + std::to_string(opts_.fillByte));
          return false;
        }
      }
    }
    std::vector<int64_t> strides(t.shape.size());
    int64_t st = 1;
    for (size_t i = t.shape.size(); i-- > 0;) {
      strides[i] = st;
      st *= t.shape[i];
    }
    d->acl = g_cann.aclCreateTensor(t.shape.data(), t.shape.size(), t.dtype, strides.data(), 0, kAclFormatNd,
                                    t.shape.data(), t.shape.size(), d->dev);
    if (!d->acl) {
      fail(&f_, "aclCreateTensor", -1, what + " (returned null)");
      return false;
    }
    return true;
  }

  void run(std::vector<DeviceTensor>& din, std::vector<DeviceTensor>& dout, void** workspace) {
    static const char* const kIn[6][18] = {
        {"x", "expertIds", "scales", "xActiveMask"},
        {"x", "y", "expertIds", "commCmdInfo"},
        {"expandX", "expertIds", "assistInfoForCombine"},
        {"expandX", "quantExpandX", "expertIds", "expandIdx", "expertScales", "commCmdInfo", "xActiveMask", "sharedExpertX"},
        {"x", "expertIds", "scales", "xActiveMask", "expertScales", "elasticInfo", "performanceInfo"},
        {"expandX", "expertIds", "assistInfoForCombine", "epSendCounts", "expertScales", "tpSendCounts", "xActiveMask",
         "activationScale", "weightScale", "groupList", "expandScales", "sharedExpertX", "elasticInfo", "oriX",
         "constExpertAlpha1", "constExpertAlpha2", "constExpertV", "performanceInfo"},
    };
    int k = static_cast<int>(kind_);
    for (size_t i = 0; i < in_.size(); i++) {
      if (!toDevice(in_[i], &din[i], true, kIn[k][i])) return;
    }
    for (size_t i = 0; i < out_.size(); i++) {
      if (!toDevice(out_[i], &dout[i], false, "output " + std::to_string(i))) return;
    }
    auto a = [&](size_t i) -> const aclTensor* { return din[i].acl; };
    auto o = [&](size_t i) -> aclTensor* { return dout[i].acl; };
    const int64_t* v = ints_.data();
    const char* g = groupEp_.c_str();
    // comm_alg as the caller gave it (the attribute's default is the empty string)
    const char* alg = opts_.commAlg.c_str();
    uint64_t wsSize = 0;
    aclOpExecutor* exec = nullptr;
    aclnnStatus s = 0;
    std::string wsApi = std::string(opName(kind_)) + "GetWorkspaceSize";
    switch (kind_) {
      case OpKind::DispatchSetup:
        s = g_cann.dispatchSetupWs(a(0), a(1), a(2), a(3), g, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8],
                                   alg, o(0), o(1), o(2), &wsSize, &exec);
        break;
      case OpKind::DispatchTeardown:
        s = g_cann.dispatchTeardownWs(a(0), a(1), a(2), a(3), g, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8],
                                      v[9], const_cast<char*>(alg), o(0), o(1), o(2), o(3), &wsSize, &exec);
        break;
      case OpKind::CombineSetup:
        s = g_cann.combineSetupWs(a(0), a(1), a(2), g, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], alg, o(0),
                                  o(1), &wsSize, &exec);
        break;
      case OpKind::CombineTeardown:
        s = g_cann.combineTeardownWs(a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), g, v[0], v[1], v[2], v[3], v[4],
                                     v[5], v[6], v[7], v[8], alg, o(0), &wsSize, &exec);
        break;
      // The V2 ops, in each version's argument order (§2.2). ints: dispatch [W, rank, E, tpWorldSize,
      // tpRankId, expertShardType, SN, S, quantMode, globalBs, expertTokenNumsType, Z, C, Q]; combine
      // [W, rank, E, tpWorldSize, tpRankId, expertShardType, SN, S, globalBs, outDtype, commQuantMode,
      // groupListType, Z, C, Q]. RunOp refused what a version cannot take (Z, C, Q on V2; elastic_info,
      // ori_x, const expert tensors on V2; performance_info below V4).
      case OpKind::DispatchV2: {
        const char* tp = opts_.groupTp.c_str();
        switch (g_cann.ops[4].version) {
          case 4:
            s = reinterpret_cast<FnDispatchV4Ws>(g_cann.dispatchV2Ws)(
                a(0), a(1), a(2), a(3), a(4), a(5), a(6), g, v[0], v[1], v[2], tp, v[3], v[4], v[5], v[6], v[7], v[8],
                v[9], v[10], alg, v[11], v[12], v[13], o(0), o(1), o(2), o(3), o(4), o(5), o(6), &wsSize, &exec);
            break;
          case 3:
            s = reinterpret_cast<FnDispatchV3Ws>(g_cann.dispatchV2Ws)(
                a(0), a(1), a(2), a(3), a(4), a(5), g, v[0], v[1], v[2], tp, v[3], v[4], v[5], v[6], v[7], v[8], v[9],
                v[10], alg, v[11], v[12], v[13], o(0), o(1), o(2), o(3), o(4), o(5), o(6), &wsSize, &exec);
            break;
          default:
            s = reinterpret_cast<FnDispatchV2Ws>(g_cann.dispatchV2Ws)(
                a(0), a(1), a(2), a(3), a(4), g, v[0], v[1], v[2], tp, v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
                alg, o(0), o(1), o(2), o(3), o(4), o(5), o(6), &wsSize, &exec);
        }
        break;
      }
      case OpKind::CombineV2: {
        const char* tp = opts_.groupTp.c_str();
        switch (g_cann.ops[5].version) {
          case 4:
            s = reinterpret_cast<FnCombineV4Ws>(g_cann.combineV2Ws)(
                a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), a(8), a(9), a(10), a(11), a(12), a(13), a(14), a(15),
                a(16), a(17), g, v[0], v[1], v[2], tp, v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], alg,
                v[12], v[13], v[14], o(0), &wsSize, &exec);
            break;
          case 3:
            s = reinterpret_cast<FnCombineV3Ws>(g_cann.combineV2Ws)(
                a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), a(8), a(9), a(10), a(11), a(12), a(13), a(14), a(15),
                a(16), g, v[0], v[1], v[2], tp, v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], alg, v[12],
                v[13], v[14], o(0), &wsSize, &exec);
            break;
          default:
            s = reinterpret_cast<FnCombineV2Ws>(g_cann.combineV2Ws)(
                a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), a(8), a(9), a(10), a(11), g, v[0], v[1], v[2], tp, v[3],
                v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], alg, o(0), &wsSize, &exec);
        }
        break;
      }
    }
    if (s != 0) {
      const std::string soc = socName();
      if (isV2(kind_)) {
        unsupported_ = s == 561003;
        if (s == 161002 || s == 561002 || s == 561003) return fail(&f_, wsApi, s, refusedV2Message(soc, g_cann.ops[k].library, s));
        return fail(&f_, wsApi, s);
      }
      // on a 950 these codes are its own refusals (the binary is the one the 950 contract reads)
      if (socIs950(soc) && (s == 161002 || s == 561002 || s == 561003)) {
        unsupported_ = s == 561003;
        return fail(&f_, wsApi, s, refused950Message(soc, g_cann.ops[k].library, s));
      }
      // an op binary built for another SoC answers with these codes
      if (s == 161002 || s == 561002 || s == 561003) {
        unsupported_ = true;
        return fail(&f_, wsApi, s, "if the parameters are right, this op may not run here: " +
                                       missingOpsMessage(soc, g_cann.ops[k].library));
      }
      return fail(&f_, wsApi, s);
    }
    if (wsSize > 0) {
      aclError e = g_cann.aclrtMalloc(workspace, wsSize, kMemMallocHugeFirst);
      if (e != 0) {
        *workspace = nullptr;
        return fail(&f_, "aclrtMalloc", e, "workspace of " + std::to_string(wsSize) + " bytes");
      }
    }
    FnLaunch launch = kind_ == OpKind::DispatchSetup      ? g_cann.dispatchSetup
                      : kind_ == OpKind::DispatchTeardown ? g_cann.dispatchTeardown
                      : kind_ == OpKind::CombineSetup     ? g_cann.combineSetup
                      : kind_ == OpKind::CombineTeardown  ? g_cann.combineTeardown
                      : kind_ == OpKind::DispatchV2       ? g_cann.dispatchV2
                                                          : g_cann.combineV2;
    s = launch(*workspace, wsSize, exec, g_dev.stream);
    if (s != 0) return fail(&f_, opName(kind_), s);
    // a peer that never calls its op would otherwise hold this rank until HCCL_EXEC_TIMEOUT
    aclError e = g_cann.aclrtSynchronizeStreamWithTimeout(g_dev.stream, opts_.timeoutMs);
    if (e == kStreamSyncTimeout) {
      timedOut_ = true;
      const char* hx = getenv("HCCL_EXEC_TIMEOUT");
      return fail(&f_, "aclrtSynchronizeStreamWithTimeout", e,
                  std::string(opName(kind_)) + " on rank " + std::to_string(v[1]) + " did not complete within " +
                      std::to_string(opts_.timeoutMs) +
                      " ms (the group's timeoutMs): a peer rank is dead or has not called its op; HCCL itself "
                      "would wait HCCL_EXEC_TIMEOUT (" +
                      (hx ? std::string(hx) + " s here" : std::string("unset: 1836 s by default on A3")) + ")");
    }
    if (e != 0) return fail(&f_, "aclrtSynchronizeStreamWithTimeout", e, std::string("after ") + opName(kind_));
    for (size_t i = 0; i < out_.size(); i++) {
      size_t n = out_[i].nbytes();
      out_[i].bytes.assign(n, 0);
      if (n == 0) continue;
      e = g_cann.aclrtMemcpy(out_[i].bytes.data(), n, dout[i].dev, n, kMemcpyDeviceToHost);
      if (e != 0) return fail(&f_, "aclrtMemcpy", e, "output " + std::to_string(i) + " device to host");
    }
  }

  Napi::Promise::Deferred deferred_;
  OpKind kind_;
  std::vector<HostTensor> in_, out_;
  std::vector<int64_t> ints_;
  std::string groupEp_;
  OpOptions opts_;
  Failure f_;
  bool timedOut_ = false;
  bool unsupported_ = false;
};

OpOptions readOptions(Napi::Value v) {
  OpOptions o;
  if (!v.IsObject()) return o;
  Napi::Object obj = v.As<Napi::Object>();
  if (obj.Get("commAlg").IsString()) o.commAlg = obj.Get("commAlg").As<Napi::String>().Utf8Value();
  if (obj.Get("groupTp").IsString()) o.groupTp = obj.Get("groupTp").As<Napi::String>().Utf8Value();
  if (obj.Get("fillByte").IsNumber()) o.fillByte = obj.Get("fillByte").As<Napi::Number>().Int32Value() & 0xff;
  if (obj.Get("timeoutMs").IsNumber()) o.timeoutMs = obj.Get("timeoutMs").As<Napi::Number>().Int32Value();
  return o;
}

// runOp(op, inputs[], outputs[] (dtype, shape), ints[], groupEp, {commAlg, fillByte, timeoutMs})
//   -> Promise<ArrayBuffer[]>
Napi::Value RunOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireAvailable(env);
  if (!g_dev.stream) throw Napi::Error::New(env, "init(deviceId) must be called before an op");
  if (!g_dev.comm) throw Napi::Error::New(env, "the rank must join its communicator before an op");
  std::string op = info[0].As<Napi::String>().Utf8Value();
  OpKind kind;
  size_t nIn, nOut, nInts;
  if (op == "dispatchSetup") kind = OpKind::DispatchSetup, nIn = 4, nOut = 3, nInts = 9;
  else if (op == "dispatchTeardown") kind = OpKind::DispatchTeardown, nIn = 4, nOut = 4, nInts = 10;
  else if (op == "combineSetup") kind = OpKind::CombineSetup, nIn = 3, nOut = 2, nInts = 9;
  else if (op == "combineTeardown") kind = OpKind::CombineTeardown, nIn = 8, nOut = 1, nInts = 9;
  else if (op == "dispatchV2") kind = OpKind::DispatchV2, nIn = 7, nOut = 7, nInts = 14;
  else if (op == "combineV2") kind = OpKind::CombineV2, nIn = 18, nOut = 1, nInts = 15;
  else throw Napi::Error::New(env, "unknown op " + op);
  // an op of a family this CANN lacks (load() kept the other family available)
  if (isV2(kind) ? !g_cann.dispatchV2 || !g_cann.combineV2 : !g_cann.dispatchSetup) {
    throw Napi::Error::New(env, op + ": this CANN cannot run it: " + (isV2(kind) ? g_cann.missingV2 : g_cann.missingSetup));
  }
  Napi::Array ins = info[1].As<Napi::Array>(), outs = info[2].As<Napi::Array>(), ints = info[3].As<Napi::Array>();
  if (ins.Length() != nIn || outs.Length() != nOut || ints.Length() != nInts) {
    throw Napi::Error::New(env, op + " takes " + std::to_string(nIn) + " inputs, " + std::to_string(nOut) +
                                    " outputs and " + std::to_string(nInts) + " integer attributes");
  }
  std::vector<HostTensor> in, out;
  for (uint32_t i = 0; i < nIn; i++) in.push_back(readTensor(env, ins.Get(i), true, op + " input " + std::to_string(i)));
  for (uint32_t i = 0; i < nOut; i++) {
    out.push_back(readTensor(env, outs.Get(i), false, op + " output " + std::to_string(i)));
    if (!out.back().present) throw Napi::Error::New(env, op + ": output " + std::to_string(i) + " is required");
  }
  std::vector<int64_t> iv;
  for (uint32_t i = 0; i < nInts; i++) iv.push_back(ints.Get(i).As<Napi::Number>().Int64Value());
  // what the version found cannot take (torch_npu refuses the same on V2: "The
  // aclnnMoeDistributeDispatchV3 is not supported", v2-contract §2.1): refused here, never dropped
  if (isV2(kind)) {
    const OpSource& src = g_cann.ops[kind == OpKind::DispatchV2 ? 4 : 5];
    const size_t zcq = kind == OpKind::DispatchV2 ? 11 : 12;
    const std::vector<size_t> v3Inputs = kind == OpKind::DispatchV2 ? std::vector<size_t>{5} : std::vector<size_t>{12, 13, 14, 15, 16};
    const size_t perfInput = kind == OpKind::DispatchV2 ? 6 : 17;
    auto refuse = [&](const std::string& what, const char* needs) {
      throw Napi::Error::New(env, op + ": " + what + " needs " + needs + ", and this CANN's op library " + src.library +
                                      " has " + src.name + " (v2-contract §2.2)");
    };
    if (src.version < 3) {
      for (size_t i = zcq; i < zcq + 3; i++) {
        static const char* const kZcq[3] = {"zeroExpertNum", "copyExpertNum", "constExpertNum"};
        if (iv[i] != 0) refuse(std::string(kZcq[i - zcq]) + " = " + std::to_string(iv[i]), "V3 or V4");
      }
      static const char* const kV3Inputs[5] = {"oriX", "constExpertAlpha1", "constExpertAlpha2", "constExpertV", ""};
      for (size_t i : v3Inputs) {
        const bool elastic = i == 5 || i == 12;
        if (in[i].present) refuse(elastic ? "elasticInfo" : kV3Inputs[i - 13], "V3 or V4");
      }
    }
    if (src.version < 4 && in[perfInput].present) refuse("performanceInfo", "V4");
  }
  std::string groupEp = info[4].As<Napi::String>().Utf8Value();
  OpOptions opts = readOptions(info.Length() > 5 ? info[5] : env.Undefined());
  auto* w = new OpWorker(env, kind, std::move(in), std::move(out), std::move(iv), groupEp, std::move(opts));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// outputSizes(op, inputs[] (dtype, shape), ints[], groupEp, commAlg) -> number[] | null
//   dispatchSetup: [tokenMsgSize, expandIdxOutSize, assistInfoForCombineOutSize, commCmdInfoOutSize]
//   combineSetup:  [tokenMsgSize, commCmdInfoOutSize]
// null when the op's library does not export its size helper. Runs on the JS thread, whose
// context init() made current; the helpers read only the tensors' shapes (no device memory).
Napi::Value OutputSizes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireAvailable(env);
  std::string op = info[0].As<Napi::String>().Utf8Value();
  bool dispatch = op == "dispatchSetup";
  if (!dispatch && op != "combineSetup") throw Napi::Error::New(env, "outputSizes: dispatchSetup or combineSetup, not " + op);
  if (dispatch ? !g_cann.dispatchSizes : !g_cann.combineSizes) return env.Null();
  Napi::Array ins = info[1].As<Napi::Array>(), ints = info[2].As<Napi::Array>();
  std::string groupEp = info[3].As<Napi::String>().Utf8Value();
  std::string alg = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
  std::vector<HostTensor> in;
  for (uint32_t i = 0; i < ins.Length(); i++) in.push_back(readTensor(env, ins.Get(i), false, op + " input " + std::to_string(i)));
  std::vector<int64_t> v;
  for (uint32_t i = 0; i < ints.Length(); i++) v.push_back(ints.Get(i).As<Napi::Number>().Int64Value());
  std::vector<aclTensor*> ts(in.size(), nullptr);
  Failure f;
  for (size_t i = 0; i < in.size() && !f.failed; i++) {
    if (!in[i].present) continue;
    std::vector<int64_t> strides(in[i].shape.size());
    int64_t st = 1;
    for (size_t d = in[i].shape.size(); d-- > 0;) strides[d] = st, st *= in[i].shape[d];
    ts[i] = g_cann.aclCreateTensor(in[i].shape.data(), in[i].shape.size(), in[i].dtype, strides.data(), 0, kAclFormatNd,
                                   in[i].shape.data(), in[i].shape.size(), nullptr);
    if (!ts[i]) fail(&f, "aclCreateTensor", -1, "input " + std::to_string(i) + " of the size helper (returned null)");
  }
  uint64_t r[4] = {0, 0, 0, 0};
  std::string api = dispatch ? kSizeHelpers[0] : kSizeHelpers[2];
  if (!f.failed) {
    aclnnStatus s = dispatch ? g_cann.dispatchSizes(ts[0], ts[1], ts[2], ts[3], groupEp.c_str(), v[0], v[1], v[2], v[3], v[4],
                                                    v[5], v[6], v[7], v[8], v[9], alg.c_str(), &r[0], &r[1], &r[2], &r[3])
                             : g_cann.combineSizes(ts[0], ts[1], ts[2], groupEp.c_str(), v[0], v[1], v[2], v[3], v[4], v[5],
                                                   v[6], v[7], v[8], alg.c_str(), &r[0], &r[1]);
    if (s != 0) fail(&f, api, s);
  }
  for (aclTensor* t : ts) {
    if (t) g_cann.aclDestroyTensor(t);
  }
  if (f.failed) throw toJsError(env, f, "");
  Napi::Array out = Napi::Array::New(env, dispatch ? 4 : 2);
  for (uint32_t i = 0; i < out.Length(); i++) out.Set(i, Napi::Number::New(env, static_cast<double>(r[i])));
  return out;
}

// deviceCount(): aclrtGetDeviceCount, with aclInit/aclFinalize around it when this process has not
// initialised ACL (the probe's parent asks before it starts any rank).
Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireAvailable(env);
  Failure f;
  bool mine = false;
  if (!g_dev.aclInited) {
    aclError s = g_cann.aclInit(nullptr);
    if (s != 0) {
      fail(&f, "aclInit", s);
      throw toJsError(env, f, "");
    }
    mine = true;
  }
  uint32_t n = 0;
  aclError s = g_cann.aclrtGetDeviceCount(&n);
  if (s != 0) fail(&f, "aclrtGetDeviceCount", s);
  if (mine) g_cann.aclFinalize();
  if (f.failed) throw toJsError(env, f, "");
  return Napi::Number::New(env, n);
}

Napi::Value Soc(const Napi::CallbackInfo& info) {
  std::string s = g_cann.available ? socName() : "";
  return s.empty() ? info.Env().Null() : Napi::String::New(info.Env(), s);
}

Napi::Value CommName(const Napi::CallbackInfo& info) {
  return g_dev.comm ? Napi::String::New(info.Env(), g_dev.commName) : info.Env().Null();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("load", Napi::Function::New(env, Load));
  exports.Set("init", Napi::Function::New(env, InitDevice));
  exports.Set("getRootInfo", Napi::Function::New(env, GetRootInfo));
  exports.Set("commInitRootInfo", Napi::Function::New(env, CommInitRootInfo));
  exports.Set("commInitClusterInfo", Napi::Function::New(env, CommInitClusterInfo));
  exports.Set("commName", Napi::Function::New(env, CommName));
  exports.Set("runOp", Napi::Function::New(env, RunOp));
  exports.Set("outputSizes", Napi::Function::New(env, OutputSizes));
  exports.Set("deviceCount", Napi::Function::New(env, DeviceCount));
  exports.Set("soc", Napi::Function::New(env, Soc));
  exports.Set("finalize", Napi::Function::New(env, Finalize));
  exports.Set("rootInfoBytes", Napi::Number::New(env, kRootInfoBytes));
  return exports;
}

}  // namespace

NODE_API_MODULE(moe_npu_bridge, Init)
