// examples/classify.cpp — screen fundus photographs with a student bundle, an exported ONNX student or a TFLite
// model; export a bundle to ONNX (docs/deploy.md).
//
//   classify --bundle student.rkd photos/ extra.jpg               files and folders (recursively)
//   classify --bundle student.rkd --manifest split.tsv --split test --csv test.csv
//   classify --bundle student.rkd photos/ --gradcam maps/ --tap stage4 --cam gradcam++
//   classify --bundle student.rkd --info                          the bundle's header
//   classify --bundle student.rkd --export-onnx student.onnx [--precision fp32|fp16] [--batch N|dynamic]
//   classify --onnx student.onnx photos/                          an exported student, run by retikd
//   classify --tflite mobilenet_v2.tflite --labels labels.txt --rgb bird.rgb --size 224   top classes
//   classify --bundle student.rkd --rgb image.rgb --size 224      raw HWC uint8 input (golden checks)
//
// Images are decoded and preprocessed as the bundle (or the ONNX file's metadata) says (fundus crop, resize,
// crop, mean/std), classified in batches, and reported as a table (unless --quiet), a CSV and / or a JSON file
// with per-class probabilities. With a manifest, the split's files are classified and compared with their
// labels (accuracy, confusion matrix, per-class recall). Unreadable images are reported and skipped; they never
// stop the batch. A TFLite model takes its input through the input tensor's quantization (real = scale ·
// (byte − zero point)) after a resize of the shorter side and a centre crop to its input size. Exit status: 0
// when at least one image was classified (or there was nothing to do), 1 on an error, when every image
// failed, when a model output was not finite or when a Grad-CAM overlay could not be written (the CSV and
// JSON are written in every case), 2 for a usage error.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <cstdlib>
#include <string>
#include <vector>

#include <retikd/core/cli_args.hpp>
#include <retikd/core/paths.hpp>
#include <retikd/deploy/deploy.hpp>
#include <retikd/deploy/tflite_interpreter.hpp>
#include <retikd/io/tflite.hpp>
#ifdef RETIKD_WITH_ONNX
#include <retikd/deploy/onnx_export.hpp>
#endif
#ifdef RETIKD_WITH_CUDA
#include <retikd/cuda/runtime.hpp>
#endif

using namespace retikd;

namespace {

struct Options {
  std::string bundle, onnx, tflite, labels;
  std::vector<std::string> inputs;
  std::string manifest, split = "test", root;
  std::string batch_text;  // --batch: N, or "dynamic" with --export-onnx
  bool allow_outside_root = false;
  int64_t batch = 0;  // not given: 2 on the CPU, 16 on a GPU (see --help)
  int64_t max_image_pixels = 0;  // not given: data::max_image_pixels()
  std::string device = "cpu";
  std::string precision;  // "": fp16 on a GPU, fp32 for --export-onnx; the CPU path always computes in fp32
  std::string csv, json, gradcam_dir, export_onnx;
  std::string rgb;   // raw HWC uint8 input
  int64_t size = 0;  // its side
  int64_t top = 5;   // --tflite: classes printed
  std::string cpu_engine = "plan";  // plan (deploy::CpuEngine) or modules (the reference path)
  int64_t benchmark = 0;            // > 0: time this many forward passes instead of classifying
  int64_t warmup = 5;
  std::string tap = "stage4", cam = "gradcam", cam_score = "logit";
  bool quiet = false, info_only = false;
  bool flip_tta = false;  // --flip-tta: mean logits of each image and its mirror
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: classify (--bundle FILE | --onnx FILE) [PATH...] [--manifest FILE [--split NAME] [--root DIR]\n"
               "                [--allow-outside-root]] [--batch N] [--device cpu|cuda [--precision fp16|fp32]]\n"
               "                [--csv FILE] [--json FILE] [--quiet] [--max-image-pixels N] [--flip-tta]\n"
               "                [--gradcam DIR [--tap NAME] [--cam gradcam|gradcam++] [--cam-score logit|logprob]]\n"
               "                [--rgb FILE --size N] [--cpu-engine plan|modules] [--info]\n"
               "       classify (--bundle FILE | --onnx FILE) --benchmark ITERS [--warmup K] [--batch N] [--json FILE]\n"
               "       classify --bundle FILE --export-onnx OUT [--precision fp32|fp16] [--batch N|dynamic]\n"
               "       classify --tflite FILE [--labels FILE] [--top K] (--rgb FILE --size N | IMAGE...)\n"
               "  --bundle FILE    a student bundle (deploy/bundle.hpp)\n"
               "  --onnx FILE      a student exported by --export-onnx, run by retikd (its weights in retikd's network;\n"
               "                   a file whose graph was edited is refused)\n"
               "  --tflite FILE    a TFLite model (e.g. ../shared/weights/coral-mobilenet-v2/*.tflite): prints the top\n"
               "                   --top (5) classes with probabilities, named by --labels (one label per line)\n"
               "  PATH             image files (JPEG, PNG) and folders (searched recursively)\n"
               "  --rgb FILE       one raw image, HWC uint8 RGB, --size N pixels square (N*N*3 bytes); it goes through\n"
               "                   the same preprocessing as a decoded file\n"
               "  --manifest FILE  classify the files of one split of a manifest (path, label, split columns)\n"
               "                   and compare with the labels; --split (default test), --root (paths' base);\n"
               "                   paths must stay under the root unless --allow-outside-root\n"
               "  --batch N        images per forward pass, 1 to 1024 (default 2 on the CPU, where larger\n"
               "                   batches fall out of cache and run slower per image; 16 on a GPU); with\n"
               "                   --export-onnx the file's batch: N, or dynamic (default)\n"
               "  --max-image-pixels N  refuse images above N pixels before decoding them (default 50000000,\n"
               "                   or RETIKD_MAX_IMAGE_PIXELS)\n"
               "  --device D       cpu (default) or cuda (builds with the CUDA library)\n"
               "  --precision P    on cuda: fp16 (default; fp16 storage, fp32 accumulation) or fp32; Grad-CAM\n"
               "                   always runs in fp32. With --export-onnx: fp32 (default) or fp16 (float16\n"
               "                   weights and arithmetic, float32 input and output)\n"
               "  --export-onnx F  write the bundle's student as ONNX opset 13 (checked by ONNX's full check)\n"
               "  --csv / --json   write per-image results with per-class probabilities\n"
               "  --gradcam DIR    write a Grad-CAM overlay PNG per image (its predicted class) into DIR;\n"
               "                   --tap (default stage4), --cam (gradcam, gradcam++), --cam-score (logit,\n"
               "                   logprob: contrastive)\n"
               "  --cpu-engine E   plan (default): the fused NCHWc engine (deploy/cpu_engine.hpp); modules: the layer\n"
               "                   by layer reference path\n"
               "  --benchmark N    time N forward passes of --batch (default 1) random images of the model's input\n"
               "                   size after --warmup (5) more; prints one JSON line with every latency (ms);\n"
               "                   bench/race_cpu.py reads it\n"
               "  --flip-tta       test-time augmentation: each image's logits are the mean of its own and its\n"
               "                   horizontal mirror's (two forward passes per image)\n"
               "  --quiet          no per-image table\n"
               "  --info           print the bundle's (or ONNX file's) header and exit\n");
}

Options parse(int argc, char** argv) {
  Options o;
  cli::ArgReader args(argc, argv);
  while (args.next()) {
    const std::string& a = args.arg();
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--bundle") {
      o.bundle = args.value();
    } else if (a == "--onnx") {
      o.onnx = args.value();
    } else if (a == "--tflite") {
      o.tflite = args.value();
    } else if (a == "--labels") {
      o.labels = args.value();
    } else if (a == "--top") {
      o.top = args.integer(1, 1000000);
    } else if (a == "--rgb") {
      o.rgb = args.value();
    } else if (a == "--size") {
      o.size = args.integer(1, data::kMaxImageSide);
    } else if (a == "--cpu-engine") {
      o.cpu_engine = args.value();
      if (o.cpu_engine != "plan" && o.cpu_engine != "modules")
        throw cli::ArgumentError("--cpu-engine is plan or modules, got '" + o.cpu_engine + "'");
    } else if (a == "--benchmark") {
      o.benchmark = args.integer(1, 100000000);
    } else if (a == "--warmup") {
      o.warmup = args.integer(0, 100000000);
    } else if (a == "--export-onnx") {
      o.export_onnx = args.value();
    } else if (a == "--manifest") {
      o.manifest = args.value();
    } else if (a == "--split") {
      o.split = args.value();
    } else if (a == "--root") {
      o.root = args.value();
    } else if (a == "--allow-outside-root") {
      o.allow_outside_root = true;
    } else if (a == "--batch") {
      o.batch_text = args.value();
    } else if (a == "--device") {
      o.device = args.value();
      if (o.device != "cpu" && o.device != "cuda") throw cli::ArgumentError("--device is cpu or cuda, got '" + o.device + "'");
    } else if (a == "--precision") {
      o.precision = args.value();
      if (o.precision != "fp16" && o.precision != "fp32")
        throw cli::ArgumentError("--precision is fp16 or fp32, got '" + o.precision + "'");
    } else if (a == "--csv") {
      o.csv = args.value();
    } else if (a == "--json") {
      o.json = args.value();
    } else if (a == "--gradcam") {
      o.gradcam_dir = args.value();
    } else if (a == "--tap") {
      o.tap = args.value();
    } else if (a == "--cam") {
      o.cam = args.value();
    } else if (a == "--cam-score") {
      o.cam_score = args.value();
    } else if (a == "--max-image-pixels") {
      o.max_image_pixels = args.integer(1, int64_t(data::kMaxImageSide) * data::kMaxImageSide);
    } else if (a == "--quiet") {
      o.quiet = true;
    } else if (a == "--info") {
      o.info_only = true;
    } else if (a == "--flip-tta") {
      o.flip_tta = true;
    } else if (!a.empty() && a[0] == '-') {
      throw cli::ArgumentError("unknown option " + a);
    } else {
      o.inputs.push_back(a);
    }
  }
  auto usage_error = [](const char* what) { throw cli::ArgumentError(what); };
  auto batch_number = [&] { return cli::parse_int("--batch", o.batch_text, 1, 1024); };
  if (!o.bundle.empty() + !o.onnx.empty() + !o.tflite.empty() != 1)
    usage_error("give exactly one model: --bundle FILE, --onnx FILE or --tflite FILE");
  if (!o.precision.empty() && o.precision != "fp16" && o.precision != "fp32")
    usage_error("--precision is fp16 or fp32");
  if (!o.export_onnx.empty()) {
    if (o.bundle.empty()) usage_error("--export-onnx exports a --bundle");
    if (!o.batch_text.empty() && o.batch_text != "dynamic") o.batch = batch_number();
    return o;
  }
  if (!o.batch_text.empty()) o.batch = batch_number();
  if (o.rgb.empty() != (o.size == 0)) usage_error("--rgb FILE and --size N go together");
  if (!o.labels.empty() && o.tflite.empty()) usage_error("--labels names a --tflite model's classes");
  if (!o.tflite.empty() && !o.manifest.empty()) usage_error("--manifest is for the fundus students (--bundle, --onnx)");
  if (o.benchmark > 0 && !o.tflite.empty()) usage_error("--benchmark times a --bundle or --onnx student");
  if (o.flip_tta && !o.tflite.empty()) usage_error("--flip-tta is for the fundus students (--bundle, --onnx)");
  if (o.flip_tta && o.benchmark > 0) usage_error("--flip-tta is not timed by --benchmark (one pass per image)");
  if (!o.info_only && o.benchmark == 0 && o.inputs.empty() && o.manifest.empty() && o.rgb.empty())
    usage_error("nothing to classify: give image files or folders, --rgb, or --manifest");
  deploy::parse_cam_method(o.cam);  // unknown names are usage errors, before any work
  deploy::parse_cam_score(o.cam_score);
  return o;
}

void print_info(const deploy::BundleInfo& b, bool onnx) {
  std::printf("%s %s: format %d, %s (%lld classes, width %g), %lld parameters, %lld bytes\n", onnx ? "onnx" : "bundle",
              b.path.c_str(), b.format_version, b.arch.c_str(), static_cast<long long>(b.options.num_classes),
              b.options.width_mult, static_cast<long long>(b.parameters), static_cast<long long>(b.file_bytes));
  std::printf("  classes:");
  for (const auto& c : b.classes) std::printf(" %s", c.c_str());
  const auto& p = b.preprocess;
  std::printf("\n  preprocess: %sresize %d, crop %d, mean (%g, %g, %g), std (%g, %g, %g)\n",
              p.fundus_crop ? "fundus crop, " : "", p.resize, p.crop, p.mean[0], p.mean[1], p.mean[2], p.std[0],
              p.std[1], p.std[2]);
  if (onnx)
    std::printf("  exported from: %s (graph checked against retikd's export of %s)\n", b.checksum.c_str(), b.arch.c_str());
  else
    std::printf("  checksum: %s (verified)\n", b.checksum.c_str());
  for (const auto& kv : b.metadata) std::printf("  %s: %s\n", kv.first.c_str(), kv.second.c_str());
}

// A raw HWC uint8 RGB file of side `size`.
data::ImageU8 read_rgb(const std::string& path, int64_t size) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  RETIKD_CHECK(f.good(), "--rgb ", path, ": cannot open");
  const std::streamsize bytes = f.tellg();
  const std::streamsize want = static_cast<std::streamsize>(size * size * 3);
  RETIKD_CHECK(bytes == want, "--rgb ", path, " has ", static_cast<long long>(bytes), " bytes; --size ", size,
               " needs ", static_cast<long long>(want), " (HWC uint8 RGB)");
  f.seekg(0);
  data::ImageU8 img(static_cast<int>(size), static_cast<int>(size));
  f.read(reinterpret_cast<char*>(img.pixels.data()), want);
  return img;
}

std::vector<std::string> read_labels(const std::string& path) {
  std::ifstream f(path);
  RETIKD_CHECK(f.good(), "--labels ", path, ": cannot open");
  std::vector<std::string> labels;
  for (std::string line; std::getline(f, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  return labels;
}

// --tflite: each image resized (shorter side) and centre-cropped to the model's input, mapped through the input
// tensor's quantization (a float input: byte / 127.5 - 1), run by deploy/tflite_interpreter.hpp's float network; the top classes.
int run_tflite(const Options& o) {
  namespace tfl = io::tflite;
  deploy::tflite::FloatNetwork net(tfl::Model::from_file(o.tflite));
  const tfl::TensorInfo& in = net.model().tensor(net.model().inputs()[0]);
  RETIKD_CHECK(in.shape.size() == 4 && in.shape[3] == 3, "classify: ", o.tflite, ": input ", in.name,
               " is not an NHWC RGB image");
  const int64_t H = in.shape[1], W = in.shape[2];
  RETIKD_CHECK(H == W, "classify: ", o.tflite, ": the input is ", H, "x", W, " (square inputs only)");
  const std::vector<std::string> labels = o.labels.empty() ? std::vector<std::string>() : read_labels(o.labels);
  const bool quantized = (in.type == tfl::TensorType::uint8 || in.type == tfl::TensorType::int8) && in.quant.present();
  std::printf("classify: %s, input %lldx%lld %s (%s)\n", o.tflite.c_str(), static_cast<long long>(H),
              static_cast<long long>(W), tfl::tensor_type_name(in.type),
              quantized ? "real = scale * (q - zero point), the file's quantization" : "real = byte / 127.5 - 1");
  std::vector<std::pair<std::string, data::ImageU8>> images;
  if (!o.rgb.empty()) images.emplace_back(o.rgb, read_rgb(o.rgb, o.size));
  for (const auto& f : deploy::collect_images(o.inputs).files) images.emplace_back(f, data::load_image(f));
  int shown = 0;
  for (auto& item : images) {
    data::ImageU8 img = item.second;
    if (img.width != W || img.height != H) {
      deploy::Preprocess geometry;
      geometry.resize = static_cast<int>(H);
      geometry.crop = static_cast<int>(H);
      img = geometry.view(img);
    }
    Tensor x;
    if (quantized) {
      x = net.input_from_uint8(img.pixels);
    } else {
      x = Tensor::empty({1, H, W, 3});
      float* p = x.data<float>();
      for (std::size_t i = 0; i < img.pixels.size(); ++i) p[i] = img.pixels[i] / 127.5f - 1.0f;
    }
    Tensor y = net.forward(x).contiguous();
    RETIKD_CHECK(y.dim() == 2 && y.size(0) == 1, "classify: ", o.tflite, ": output ", shape_str(y.shape()),
                 " is not (1, classes)");
    std::vector<float> p = y.to_vector<float>();
    double sum = 0;
    bool in_range = true;
    for (float v : p) {
      sum += v;
      in_range = in_range && v >= 0 && v <= 1;
    }
    const bool probabilities = in_range && std::fabs(sum - 1.0) < 1e-3;
    if (!probabilities) p = ops::impl::softmax(y, 1).to_vector<float>();  // logits: softmax them
    std::vector<std::size_t> order(p.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(o.top), order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                      [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });
    std::printf("%s:%s\n", item.first.c_str(), probabilities ? "" : " (softmax of the model's logits)");
    for (std::size_t r = 0; r < k; ++r) {
      const std::size_t c = order[r];
      std::printf("  %5zu  %.4f  %s\n", c, p[c], c < labels.size() ? labels[c].c_str() : "");
    }
    ++shown;
  }
  return shown > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "classify: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    if (o.max_image_pixels > 0) data::set_max_image_pixels(o.max_image_pixels);
    if (!o.tflite.empty()) return run_tflite(o);
    deploy::Bundle bundle;
    if (!o.bundle.empty()) {
      bundle = deploy::load_bundle(o.bundle);
    } else {
#ifdef RETIKD_WITH_ONNX
      deploy::OnnxStudent s = deploy::load_onnx_student(o.onnx);
      bundle.info = s.info;
      bundle.model = s.model;
#else
      std::fprintf(stderr, "classify: --onnx: this build has no ONNX support (install libonnx-dev libprotobuf-dev "
                           "and reconfigure: retikd::onnx)\n");
      return 1;
#endif
    }
    if (!o.export_onnx.empty()) {
#ifdef RETIKD_WITH_ONNX
      deploy::OnnxExportOptions eo;
      eo.precision = deploy::parse_precision(o.precision.empty() ? "fp32" : o.precision);
      eo.batch = o.batch;
      const deploy::OnnxExportReport r = deploy::export_onnx(o.export_onnx, bundle, eo);
      std::printf("exported %s (%s, %s, batch %s, input %d px, opset %lld): %s\n", o.bundle.c_str(),
                  bundle.info.arch.c_str(), deploy::precision_name(eo.precision),
                  eo.batch > 0 ? std::to_string(eo.batch).c_str() : "dynamic", bundle.info.preprocess.input_size(),
                  static_cast<long long>(io::onnx::kExportOpset), r.summary().c_str());
      return 0;
#else
      std::fprintf(stderr, "classify: --export-onnx: this build has no ONNX support (install libonnx-dev "
                           "libprotobuf-dev and reconfigure: retikd::onnx)\n");
      return 1;
#endif
    }
    if (o.info_only) {
      print_info(bundle.info, !o.onnx.empty());
      return 0;
    }
    if (o.device == "cuda") {
#ifdef RETIKD_WITH_CUDA
      if (cuda::device_count() == 0) {
        std::fprintf(stderr, "classify: --device cuda: no CUDA device is visible (use --device cpu)\n");
        return 1;
      }
      bundle.model->to(Device::cuda(0));
      // fp16 storage with fp32 accumulation on the GPU (the kernels' rule; DESIGN.md §4) unless asked otherwise;
      // Grad-CAM needs gradients, which the fp16 path does not keep well: it stays in fp32.
      if (o.precision != "fp32" && o.gradcam_dir.empty()) bundle.model->to(DType::float16);
#else
      std::fprintf(stderr, "classify: --device cuda: this build has no CUDA support (configure with nvcc present, "
                           "RETIKD_CUDA=ON; docs/jetson.md), use --device cpu\n");
      return 1;
#endif
    }
    deploy::Classifier classifier(bundle);
    classifier.use_cpu_engine(o.cpu_engine == "plan");
    if (o.benchmark > 0) {
      // Latency of forward passes on fixed random inputs of the model's size (decoding excluded): the retikd column
      // of bench/race_cpu.py. Inputs are normalised values, as a real image gives after preprocessing.
      const int64_t B = o.batch > 0 ? o.batch : 1, S = bundle.info.preprocess.input_size();
      Generator gen(1);
      Tensor x = Tensor::empty({B, bundle.info.options.in_chans, S, S});
      float* px = x.data<float>();
      for (int64_t i = 0; i < x.numel(); ++i) px[i] = static_cast<float>(gen.uniform(-2.0, 2.0));
      for (int64_t i = 0; i < o.warmup; ++i) classifier.logits(x);
      std::vector<double> ms;
      for (int64_t i = 0; i < o.benchmark; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        classifier.logits(x);
        ms.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::string j = "{\"engine\": \"retikd " + std::string(classifier.cpu_engine() ? "plan" : "modules") +
                      "\", \"arch\": \"" + bundle.info.arch + "\", \"batch\": " + std::to_string(B) +
                      ", \"img\": " + std::to_string(S) + ", \"threads\": " + std::to_string(thread_pool().num_threads()) +
                      ", \"latencies_ms\": [";
      for (std::size_t i = 0; i < ms.size(); ++i) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%.4f", i ? ", " : "", ms[i]);
        j += buf;
      }
      j += "]}\n";
      if (!o.json.empty()) {
        deploy::write_text_file(o.json, j);
      } else {
        std::printf("%s", j.c_str());
      }
      return 0;
    }
    const int64_t batch = o.batch > 0 ? o.batch : (o.device == "cuda" ? 16 : 2);
    const auto& classes = classifier.info().classes;
    if (!o.rgb.empty()) {
      // One raw image through the bundle's preprocessing (its geometry resizes an image of another size).
      const data::Image x = classifier.info().preprocess.input(read_rgb(o.rgb, o.size));
      const std::vector<float> p = classifier.probabilities({&x}, o.flip_tta).to_vector<float>();
      const std::size_t best = static_cast<std::size_t>(std::max_element(p.begin(), p.end()) - p.begin());
      std::printf("%s: %s %.4f\n", o.rgb.c_str(), classes[best].c_str(), p[best]);
      for (std::size_t k = 0; k < p.size(); ++k) std::printf("  %-12s %.6f\n", classes[k].c_str(), p[k]);
      if (o.inputs.empty() && o.manifest.empty()) return 0;
    }

    // What to classify, and the known labels where a manifest gives them.
    std::vector<std::string> files;
    std::vector<int64_t> truths;
    std::vector<std::string> problems;
    if (!o.manifest.empty()) {
      data::DatasetOptions dopt;
      dopt.policy = data::BadInput::skip;  // a row whose file is missing is reported, the rest classified
      dopt.root = o.root;
      dopt.allow_outside_root = o.allow_outside_root;
      dopt.warnings = [&](const std::string& w) { problems.push_back(w); };
      const data::Dataset ds = data::Dataset::from_manifest(o.manifest, dopt).split(o.split);
      if (ds.empty()) {
        std::fprintf(stderr, "classify: %s has no usable rows in split '%s'\n", o.manifest.c_str(), o.split.c_str());
        return 1;
      }
      const std::vector<int64_t> map = deploy::class_index_map(classes);
      for (const auto& s : ds.samples) {
        if (map[static_cast<std::size_t>(s.label)] < 0) {
          std::fprintf(stderr, "classify: the manifest's label %s is not among the bundle's classes\n",
                       data::class_name(s.label));
          return 1;
        }
        files.push_back(s.path);
        truths.push_back(map[static_cast<std::size_t>(s.label)]);
      }
    }
    if (!o.inputs.empty()) {
      deploy::ImageList in = deploy::collect_images(o.inputs);
      problems.insert(problems.end(), in.problems.begin(), in.problems.end());
      for (const auto& f : in.files) {
        files.push_back(f);
        if (!truths.empty()) truths.push_back(-1);
      }
    }
    for (const auto& p : problems) std::fprintf(stderr, "classify: warning: %s\n", p.c_str());
    if (files.empty()) {
      std::printf("classify: no images to classify\n");
      return problems.empty() ? 0 : 1;
    }

    std::printf("classify: %zu images with %s (%s, %lld parameters, input %d px) on %s, batch %lld%s\n", files.size(),
                (o.bundle.empty() ? o.onnx : o.bundle).c_str(), bundle.info.arch.c_str(), static_cast<long long>(bundle.info.parameters),
                bundle.info.preprocess.input_size(),
                (classifier.device().to_string() + (classifier.dtype() == DType::float16 ? " fp16" : "")).c_str(),
                static_cast<long long>(batch), o.flip_tta ? ", flip TTA" : "");
    deploy::ClassifyOptions copt;
    copt.batch = batch;
    copt.flip_tta = o.flip_tta;
    if (!o.quiet && files.size() > static_cast<std::size_t>(batch))
      copt.progress = [](int64_t done, int64_t total) {
        std::fprintf(stderr, "\rclassify: %lld / %lld", static_cast<long long>(done), static_cast<long long>(total));
        if (done == total) std::fprintf(stderr, "\n");
      };
    deploy::ClassifyTiming timing;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<deploy::Prediction> preds;
    try {
      preds = classifier.classify(files, truths, copt, &timing);
    } catch (const std::exception& e) {
      if (o.device != "cuda") throw;
      std::fprintf(stderr, "classify: GPU inference failed: %s\n(use --device cpu, or --precision fp32)\n", e.what());
      return 1;
    }
    const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const deploy::ClassifySummary sum = deploy::summarize(preds, classes.size());

    // Overlays are extras: whatever goes wrong with them, the predictions are still reported and written.
    bool gradcam_failed = false;
    if (!o.gradcam_dir.empty() && sum.classified > 0) {
      deploy::OverlayOptions g;
      g.dir = o.gradcam_dir;
      g.cam.tap = o.tap;
      g.cam.method = deploy::parse_cam_method(o.cam);
      g.cam.score = deploy::parse_cam_score(o.cam_score);
      g.batch = std::min<int64_t>(batch, 8);
      try {
        const int64_t n = deploy::write_gradcam_overlays(classifier, preds, g);
        std::printf("gradcam: %lld of %lld overlays (%s at %s, score %s) in %s\n", static_cast<long long>(n),
                    static_cast<long long>(sum.classified), deploy::cam_method_name(g.cam.method), o.tap.c_str(),
                    deploy::cam_score_name(g.cam.score), o.gradcam_dir.c_str());
        gradcam_failed = n < sum.classified;
        for (const auto& p : preds)
          if (p.ok && p.gradcam.empty() && !p.error.empty()) std::fprintf(stderr, "classify: %s: %s\n", p.path.c_str(), p.error.c_str());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "classify: Grad-CAM overlays failed: %s\n", e.what());
        gradcam_failed = true;
      }
    }

    if (!o.quiet) std::printf("%s", deploy::predictions_table(preds, classes).c_str());
    for (const auto& p : preds)
      if (!p.ok) std::fprintf(stderr, "classify: skipped %s\n", p.error.c_str());
    std::printf("classified %lld of %lld images (%lld skipped) in %.2f s: %.1f images/s overall, decode %.2f s, "
                "inference %.2f s (%.1f images/s)\n",
                static_cast<long long>(sum.classified), static_cast<long long>(sum.total),
                static_cast<long long>(sum.skipped), total_s, sum.classified / std::max(total_s, 1e-9),
                timing.decode_s, timing.inference_s, sum.classified / std::max(timing.inference_s, 1e-9));
    if (sum.labelled > 0) {
      std::printf("accuracy %.4f (%lld / %lld labelled)\nconfusion (rows: truth, columns: predicted):\n",
                  sum.accuracy(), static_cast<long long>(sum.correct), static_cast<long long>(sum.labelled));
      std::printf("%-12s", "");
      for (const auto& c : classes) std::printf(" %10.10s", c.c_str());
      std::printf("   recall\n");
      for (std::size_t t = 0; t < classes.size(); ++t) {
        std::printf("%-12.12s", classes[t].c_str());
        for (int64_t v : sum.confusion[t]) std::printf(" %10lld", static_cast<long long>(v));
        std::printf("   %.3f\n", sum.recall(t));
      }
    }
    if (!o.csv.empty()) {
      deploy::write_text_file(o.csv, deploy::predictions_csv(preds, classes));
      std::printf("wrote %s\n", o.csv.c_str());
    }
    if (!o.json.empty()) {
      deploy::write_text_file(o.json, deploy::predictions_json(preds, classifier.info(), sum));
      std::printf("wrote %s\n", o.json.c_str());
    }
    if (sum.classified == 0) {
      std::fprintf(stderr, "classify: no image could be classified\n");
      return 1;
    }
    if (sum.model_errors > 0) {
      std::fprintf(stderr, "classify: %lld images got a non-finite model output (status \"error\"): no class given\n",
                   static_cast<long long>(sum.model_errors));
      return 1;
    }
    return gradcam_failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: error: %s\n", e.what());
    return 1;
  }
}
