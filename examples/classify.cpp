// examples/classify.cpp — screen fundus photographs with a student bundle (docs/deploy.md).
//
//   classify --bundle student.rkd photos/ extra.jpg               files and folders (recursively)
//   classify --bundle student.rkd --manifest split.tsv --split test --csv test.csv
//   classify --bundle student.rkd photos/ --gradcam maps/ --tap stage4 --cam gradcam++
//   classify --bundle student.rkd --info                          the bundle's header
//
// Images are decoded and preprocessed as the bundle says (resize, crop, mean/std), classified in batches,
// and reported as a table (unless --quiet), a CSV and / or a JSON file with per-class probabilities. With a
// manifest, the split's files are classified and compared with their labels (accuracy, confusion matrix,
// per-class recall). Unreadable images are reported and skipped; they never stop the batch. Exit status: 0
// when at least one image was classified (or there was nothing to do), 1 on an error, when every image
// failed, when a model output was not finite or when a Grad-CAM overlay could not be written (the CSV and
// JSON are written in every case), 2 for a usage error.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <retikd/core/cli_args.hpp>
#include <retikd/core/paths.hpp>
#include <retikd/deploy/deploy.hpp>
#ifdef RETIKD_WITH_CUDA
#include <retikd/cuda/runtime.hpp>
#endif

using namespace retikd;

namespace {

struct Options {
  std::string bundle;
  std::vector<std::string> inputs;
  std::string manifest, split = "test", root;
  bool allow_outside_root = false;
  int64_t batch = 0;  // not given: 2 on the CPU, 16 on a GPU (see --help)
  int64_t max_image_pixels = 0;  // not given: data::max_image_pixels()
  std::string device = "cpu";
  std::string precision = "fp16";  // on a GPU; the CPU path always computes in fp32
  std::string csv, json, gradcam_dir;
  std::string tap = "stage4", cam = "gradcam", cam_score = "logit";
  bool quiet = false, info_only = false;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: classify --bundle FILE [PATH...] [--manifest FILE [--split NAME] [--root DIR]\n"
               "                [--allow-outside-root]] [--batch N] [--device cpu|cuda [--precision fp16|fp32]]\n"
               "                [--csv FILE] [--json FILE] [--quiet] [--max-image-pixels N]\n"
               "                [--gradcam DIR [--tap NAME] [--cam gradcam|gradcam++] [--cam-score logit|logprob]]\n"
               "                [--info]\n"
               "  PATH             image files (JPEG, PNG) and folders (searched recursively)\n"
               "  --manifest FILE  classify the files of one split of a manifest (path, label, split columns)\n"
               "                   and compare with the labels; --split (default test), --root (paths' base);\n"
               "                   paths must stay under the root unless --allow-outside-root\n"
               "  --batch N        images per forward pass, 1 to 1024 (default 2 on the CPU, where larger\n"
               "                   batches fall out of cache and run slower per image; 16 on a GPU)\n"
               "  --max-image-pixels N  refuse images above N pixels before decoding them (default 50000000,\n"
               "                   or RETIKD_MAX_IMAGE_PIXELS)\n"
               "  --device D       cpu (default) or cuda (builds with the CUDA library)\n"
               "  --precision P    on cuda: fp16 (default; fp16 storage, fp32 accumulation) or fp32; Grad-CAM\n"
               "                   always runs in fp32\n"
               "  --csv / --json   write per-image results with per-class probabilities\n"
               "  --gradcam DIR    write a Grad-CAM overlay PNG per image (its predicted class) into DIR;\n"
               "                   --tap (default stage4), --cam (gradcam, gradcam++), --cam-score (logit,\n"
               "                   logprob: contrastive)\n"
               "  --quiet          no per-image table\n"
               "  --info           print the bundle's header and exit\n");
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
    } else if (a == "--manifest") {
      o.manifest = args.value();
    } else if (a == "--split") {
      o.split = args.value();
    } else if (a == "--root") {
      o.root = args.value();
    } else if (a == "--allow-outside-root") {
      o.allow_outside_root = true;
    } else if (a == "--batch") {
      o.batch = args.integer(1, 1024);
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
    } else if (!a.empty() && a[0] == '-') {
      throw cli::ArgumentError("unknown option " + a);
    } else {
      o.inputs.push_back(a);
    }
  }
  if (o.bundle.empty()) throw cli::ArgumentError("--bundle FILE is required");
  if (!o.info_only && o.inputs.empty() && o.manifest.empty())
    throw cli::ArgumentError("nothing to classify: give image files or folders, or --manifest");
  deploy::parse_cam_method(o.cam);  // unknown names are usage errors, before any work
  deploy::parse_cam_score(o.cam_score);
  return o;
}

void print_info(const deploy::BundleInfo& b) {
  std::printf("bundle %s: format %d, %s (%lld classes, width %g), %lld parameters, %lld bytes\n", b.path.c_str(),
              b.format_version, b.arch.c_str(), static_cast<long long>(b.options.num_classes), b.options.width_mult,
              static_cast<long long>(b.parameters), static_cast<long long>(b.file_bytes));
  std::printf("  classes:");
  for (const auto& c : b.classes) std::printf(" %s", c.c_str());
  const auto& p = b.preprocess;
  std::printf("\n  preprocess: %sresize %d, crop %d, mean (%g, %g, %g), std (%g, %g, %g)\n",
              p.fundus_crop ? "fundus crop, " : "", p.resize, p.crop, p.mean[0], p.mean[1], p.mean[2], p.std[0],
              p.std[1], p.std[2]);
  std::printf("  checksum: %s (verified)\n", b.checksum.c_str());
  for (const auto& kv : b.metadata) std::printf("  %s: %s\n", kv.first.c_str(), kv.second.c_str());
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
    deploy::Bundle bundle = deploy::load_bundle(o.bundle);
    if (o.info_only) {
      print_info(bundle.info);
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
      if (o.precision == "fp16" && o.gradcam_dir.empty()) bundle.model->to(DType::float16);
#else
      std::fprintf(stderr, "classify: --device cuda: this build has no CUDA support (configure with nvcc present, "
                           "RETIKD_CUDA=ON; docs/jetson.md), use --device cpu\n");
      return 1;
#endif
    }
    deploy::Classifier classifier(bundle);
    const int64_t batch = o.batch > 0 ? o.batch : (o.device == "cuda" ? 16 : 2);
    const auto& classes = classifier.info().classes;

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

    std::printf("classify: %zu images with %s (%s, %lld parameters, input %d px) on %s, batch %lld\n", files.size(),
                o.bundle.c_str(), bundle.info.arch.c_str(), static_cast<long long>(bundle.info.parameters),
                bundle.info.preprocess.input_size(),
                (classifier.device().to_string() + (classifier.dtype() == DType::float16 ? " fp16" : "")).c_str(),
                static_cast<long long>(batch));
    deploy::ClassifyOptions copt;
    copt.batch = batch;
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
