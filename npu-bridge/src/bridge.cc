// moe_npu_bridge: runs the four MoE distribute ops (aclnnMoeDistribute{Dispatch,Combine}{Setup,Teardown})
// on an Ascend NPU for one rank of an EP group, from Node.
//
// CANN is loaded at run time with dlopen/dlsym, so this file needs no CANN header or library to
// build: the few C prototypes it calls are declared below from the public headers (acl/acl.h,
// aclnn/acl_meta.h, hccl/hccl.h and mc2/moe_distribute_*/op_api/aclnn_moe_distribute_*.h).
// `load()` reports {available: false, reason} when a library or a symbol is missing.
//
// One process drives one device (the npu backend forks one child per rank). Ops run on a worker
// thread (Napi::AsyncWorker): inputs are copied host -> device, the aclTensors are created, the
// op's workspace is sized and allocated, the op is launched and the stream synchronised, the
// outputs are copied device -> host, and every tensor, buffer and workspace is released, also
// when a call fails. Every failing CANN call becomes a JS error carrying the API name, the status
// code and aclGetRecentErrMsg()'s text.
#include <napi.h>

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
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
using HcclComm = void*;
struct aclTensor;
struct aclOpExecutor;

constexpr int kAclFormatNd = 2;           // aclFormat ACL_FORMAT_ND
constexpr int kMemMallocHugeFirst = 0;    // aclrtMemMallocPolicy ACL_MEM_MALLOC_HUGE_FIRST
constexpr int kMemcpyHostToDevice = 1;    // aclrtMemcpyKind ACL_MEMCPY_HOST_TO_DEVICE
constexpr int kMemcpyDeviceToHost = 2;    // aclrtMemcpyKind ACL_MEMCPY_DEVICE_TO_HOST
constexpr size_t kRootInfoBytes = 4108;   // HCCL_ROOT_INFO_BYTES
constexpr size_t kCommNameBytes = 128;    // group name max length (COMM_NAME_MAX_LENGTH)

using FnAclInit = aclError (*)(const char*);
using FnAclFinalize = aclError (*)();
using FnSetDevice = aclError (*)(int32_t);
using FnResetDevice = aclError (*)(int32_t);
using FnCreateStream = aclError (*)(aclrtStream*);
using FnDestroyStream = aclError (*)(aclrtStream);
using FnSyncStream = aclError (*)(aclrtStream);
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
  FnSyncStream aclrtSynchronizeStream = nullptr;
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
};

Cann g_cann;
bool g_loadAttempted = false;
std::mutex g_mutex;

// The per-process device state (one rank per process).
struct Device {
  bool aclInited = false;
  bool deviceSet = false;
  int32_t deviceId = -1;
  aclrtStream stream = nullptr;
  HcclComm comm = nullptr;
  std::string commName;
};
Device g_dev;

std::string dlerr() {
  const char* e = dlerror();
  return e ? e : "unknown dlopen error";
}

// Tries each name under $ASCEND_HOME_PATH's library directories, then through the loader's own
// search path (LD_LIBRARY_PATH, ld.so.cache). Returns the handle or nullptr with `tried` filled.
void* openLibrary(const std::string& home, const std::vector<std::string>& names, std::string* path,
                  std::string* tried) {
  std::vector<std::string> dirs;
  if (!home.empty()) {
    dirs.push_back(home + "/lib64");
    dirs.push_back(home + "/lib");
#if defined(__aarch64__)
    dirs.push_back(home + "/aarch64-linux/lib64");
#else
    dirs.push_back(home + "/x86_64-linux/lib64");
#endif
    dirs.push_back(home + "/opp/vendors/custom_transformer/op_api/lib");
  }
  for (const auto& name : names) {
    for (const auto& d : dirs) {
      std::string p = d + "/" + name;
      dlerror();
      void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL);
      if (h) {
        *path = p;
        return h;
      }
      if (!tried->empty()) *tried += "; ";
      *tried += p + ": " + dlerr();
    }
    dlerror();
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (h) {
      *path = name;
      return h;
    }
    if (!tried->empty()) *tried += "; ";
    *tried += name + ": " + dlerr();
  }
  return nullptr;
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

void loadCann(const std::string& home) {
  Cann c;
  struct Role {
    const char* role;
    std::vector<std::string> names;
    bool all;  // load every name found (the ops may live in one of several op_api libraries)
  };
  const std::vector<Role> roles = {
      {"ascendcl", {"libascendcl.so", "libacl_rt.so"}, false},
      {"nnopbase", {"libnnopbase.so"}, false},
      {"opapi", {"libopapi.so", "libopapi_transformer.so", "libcust_opapi.so"}, true},
      {"hccl", {"libhccl.so"}, false},
  };
  std::vector<std::vector<void*>> byRole;
  for (const auto& r : roles) {
    std::vector<void*> hs;
    std::string tried;
    for (size_t i = 0; i < r.names.size(); i++) {
      std::string path;
      std::vector<std::string> one = r.all ? std::vector<std::string>{r.names[i]} : r.names;
      void* h = openLibrary(home, one, &path, &tried);
      if (h) {
        hs.push_back(h);
        c.libraries.emplace_back(r.role, path);
        c.handles.push_back(h);
      }
      if (!r.all) break;
    }
    if (hs.empty()) {
      std::string names;
      for (const auto& n : r.names) names += (names.empty() ? "" : " or ") + n;
      c.reason = "CANN library " + names + " not found (ASCEND_HOME_PATH=" + (home.empty() ? "<unset>" : home) +
                 "); tried " + tried;
      g_cann = c;
      return;
    }
    byRole.push_back(hs);
  }
  const auto& acl = byRole[0];
  const auto& nnop = byRole[1];
  const auto& opapi = byRole[2];
  const auto& hccl = byRole[3];
  bool ok = resolve(c, acl, "aclInit", "libascendcl", &c.aclInit) &&
            resolve(c, acl, "aclFinalize", "libascendcl", &c.aclFinalize) &&
            resolve(c, acl, "aclrtSetDevice", "libascendcl", &c.aclrtSetDevice) &&
            resolve(c, acl, "aclrtResetDevice", "libascendcl", &c.aclrtResetDevice) &&
            resolve(c, acl, "aclrtCreateStream", "libascendcl", &c.aclrtCreateStream) &&
            resolve(c, acl, "aclrtDestroyStream", "libascendcl", &c.aclrtDestroyStream) &&
            resolve(c, acl, "aclrtSynchronizeStream", "libascendcl", &c.aclrtSynchronizeStream) &&
            resolve(c, acl, "aclrtMalloc", "libascendcl", &c.aclrtMalloc) &&
            resolve(c, acl, "aclrtFree", "libascendcl", &c.aclrtFree) &&
            resolve(c, acl, "aclrtMemcpy", "libascendcl", &c.aclrtMemcpy) &&
            resolve(c, acl, "aclGetRecentErrMsg", "libascendcl", &c.aclGetRecentErrMsg) &&
            resolve(c, nnop, "aclCreateTensor", "libnnopbase", &c.aclCreateTensor) &&
            resolve(c, nnop, "aclDestroyTensor", "libnnopbase", &c.aclDestroyTensor) &&
            resolve(c, hccl, "HcclGetRootInfo", "libhccl", &c.HcclGetRootInfo) &&
            resolve(c, hccl, "HcclCommInitRootInfo", "libhccl", &c.HcclCommInitRootInfo) &&
            resolve(c, hccl, "HcclCommInitClusterInfo", "libhccl", &c.HcclCommInitClusterInfo) &&
            resolve(c, hccl, "HcclGetCommName", "libhccl", &c.HcclGetCommName) &&
            resolve(c, hccl, "HcclCommDestroy", "libhccl", &c.HcclCommDestroy) &&
            resolve(c, opapi, "aclnnMoeDistributeDispatchSetupGetWorkspaceSize", "the op_api libraries",
                    &c.dispatchSetupWs) &&
            resolve(c, opapi, "aclnnMoeDistributeDispatchSetup", "the op_api libraries", &c.dispatchSetup) &&
            resolve(c, opapi, "aclnnMoeDistributeDispatchTeardownGetWorkspaceSize", "the op_api libraries",
                    &c.dispatchTeardownWs) &&
            resolve(c, opapi, "aclnnMoeDistributeDispatchTeardown", "the op_api libraries", &c.dispatchTeardown) &&
            resolve(c, opapi, "aclnnMoeDistributeCombineSetupGetWorkspaceSize", "the op_api libraries",
                    &c.combineSetupWs) &&
            resolve(c, opapi, "aclnnMoeDistributeCombineSetup", "the op_api libraries", &c.combineSetup) &&
            resolve(c, opapi, "aclnnMoeDistributeCombineTeardownGetWorkspaceSize", "the op_api libraries",
                    &c.combineTeardownWs) &&
            resolve(c, opapi, "aclnnMoeDistributeCombineTeardown", "the op_api libraries", &c.combineTeardown);
  if (ok) {
    c.available = true;
    c.reason.clear();
  } else {
    c.reason += " (this CANN does not provide the MoE distribute setup/teardown ops; they need the CANN "
                "release or the ops-transformer package that ships them)";
  }
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

Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_loadAttempted || !g_cann.available) {
    std::string home = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    loadCann(home);
    g_loadAttempted = true;
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
    join();
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

enum class OpKind { DispatchSetup, DispatchTeardown, CombineSetup, CombineTeardown };

const char* opName(OpKind k) {
  switch (k) {
    case OpKind::DispatchSetup: return "aclnnMoeDistributeDispatchSetup";
    case OpKind::DispatchTeardown: return "aclnnMoeDistributeDispatchTeardown";
    case OpKind::CombineSetup: return "aclnnMoeDistributeCombineSetup";
    case OpKind::CombineTeardown: return "aclnnMoeDistributeCombineTeardown";
  }
  return "";
}

class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, OpKind kind, std::vector<HostTensor> in, std::vector<HostTensor> out, std::vector<int64_t> ints,
           std::string groupEp)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), kind_(kind), in_(std::move(in)),
        out_(std::move(out)), ints_(std::move(ints)), groupEp_(std::move(groupEp)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::vector<DeviceTensor> din(in_.size()), dout(out_.size());
    void* workspace = nullptr;
    run(din, dout, &workspace);
    // release everything, in reverse order of creation; the first failure stays the reported one
    if (workspace) {
      aclError s = g_cann.aclrtFree(workspace);
      if (s != 0) fail(&f_, "aclrtFree", s, "workspace");
    }
    auto release = [&](std::vector<DeviceTensor>& v) {
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
    release(dout);
    release(din);
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
  void OnError(const Napi::Error&) override { deferred_.Reject(toJsError(Env(), f_, opName(kind_)).Value()); }

 private:
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
    static const char* const kIn[4][8] = {
        {"x", "expertIds", "scales", "xActiveMask"},
        {"x", "y", "expertIds", "commCmdInfo"},
        {"expandX", "expertIds", "assistInfoForCombine"},
        {"expandX", "quantExpandX", "expertIds", "expandIdx", "expertScales", "commCmdInfo", "xActiveMask", "sharedExpertX"},
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
    uint64_t wsSize = 0;
    aclOpExecutor* exec = nullptr;
    aclnnStatus s = 0;
    std::string wsApi = std::string(opName(kind_)) + "GetWorkspaceSize";
    // commAlg: reserved, "pass a null pointer" (op_api headers)
    switch (kind_) {
      case OpKind::DispatchSetup:
        s = g_cann.dispatchSetupWs(a(0), a(1), a(2), a(3), g, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8],
                                   nullptr, o(0), o(1), o(2), &wsSize, &exec);
        break;
      case OpKind::DispatchTeardown:
        s = g_cann.dispatchTeardownWs(a(0), a(1), a(2), a(3), g, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8],
                                      v[9], nullptr, o(0), o(1), o(2), o(3), &wsSize, &exec);
        break;
      case OpKind::CombineSetup:
        s = g_cann.combineSetupWs(a(0), a(1), a(2), g, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], nullptr,
                                  o(0), o(1), &wsSize, &exec);
        break;
      case OpKind::CombineTeardown:
        s = g_cann.combineTeardownWs(a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), g, v[0], v[1], v[2], v[3], v[4],
                                     v[5], v[6], v[7], v[8], nullptr, o(0), &wsSize, &exec);
        break;
    }
    if (s != 0) return fail(&f_, wsApi, s);
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
                                                          : g_cann.combineTeardown;
    s = launch(*workspace, wsSize, exec, g_dev.stream);
    if (s != 0) return fail(&f_, opName(kind_), s);
    aclError e = g_cann.aclrtSynchronizeStream(g_dev.stream);
    if (e != 0) return fail(&f_, "aclrtSynchronizeStream", e, std::string("after ") + opName(kind_));
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
  Failure f_;
};

// runOp(op, inputs[], outputs[] (dtype, shape), ints[], groupEp) -> Promise<ArrayBuffer[]>
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
  else throw Napi::Error::New(env, "unknown op " + op);
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
  std::string groupEp = info[4].As<Napi::String>().Utf8Value();
  auto* w = new OpWorker(env, kind, std::move(in), std::move(out), std::move(iv), groupEp);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
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
  exports.Set("finalize", Napi::Function::New(env, Finalize));
  exports.Set("rootInfoBytes", Napi::Number::New(env, kRootInfoBytes));
  return exports;
}

}  // namespace

NODE_API_MODULE(moe_npu_bridge, Init)
