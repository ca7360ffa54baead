// examples/pretrain_ijepa.cpp — I-JEPA self-supervised pretraining of the ViT teacher on the images of a
// dataset (labels ignored; the train split by default), then optionally a linear probe of the encoder against
// the same encoder before pretraining. DESIGN.md §1 step 1; ssl/ holds the method, this file the job around it:
//
//   OUT/last.safetensors, best.safetensors  resumable checkpoints (context + target encoder, predictor, AdamW,
//                                           lr schedule, RNG, epoch, step), written atomically
//   OUT/log.jsonl                           one JSON line per epoch (train loss, held-out pretext loss, lr, wd,
//                                           EMA momentum, seconds)
//   OUT/steps.tsv                           the loss of every optimizer step (the report's curve)
//   OUT/encoder.safetensors                 the context encoder as a ViT checkpoint with timm names, no head:
//                                           what `distill_retina --teacher-init FILE` loads (same patch / image
//                                           size and width); --export-img N adds encoder_<N>px.safetensors with
//                                           the position embedding resampled to that image size
//   OUT/target_encoder.safetensors          the same for the target (EMA) encoder
//   OUT/report.md + SVGs                    loss curves (and the probe table with --probe)
//   OUT/probe.json, probe.md                linear probe: accuracy / macro-F1 on the test split
//
// Defaults fit a 2-core CPU: a ViT-Tiny-wide encoder (D 192, 3 heads) of depth 6 on 112 px images with 8 px
// patches (a 14×14 grid, the smallest that leaves enough context patches for the multi-block masks), a
// predictor of width 96 and depth 4.
//
// --arch dinov2_s14 --init FILE continues from pretrained DINOv2 ViT-S/14 weights (ONNX export or timm-named
// safetensors): domain-adaptive I-JEPA on the fundus images. The encoder is then vit_small_patch14_dinov2 (patch
// 14, its learned 37×37 position embedding, resampled bicubically; --img a multiple of 14), both encoders start
// from the file, the predictor (default width 192, 6 heads) from scratch; encoder.safetensors is what
// `distill_retina --teacher-weights FILE` fine-tunes.
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <retikd/core/cli_args.hpp>
#include <retikd/core/error.hpp>
#include <retikd/core/paths.hpp>
#include <retikd/data/data.hpp>
#include <retikd/data/subset.hpp>
#include <retikd/dist/data_parallel.hpp>
#include <retikd/dist/session.hpp>
#include <retikd/io/json.hpp>
#include <retikd/io/safetensors.hpp>
#include <retikd/metrics/classification.hpp>
#include <retikd/metrics/report.hpp>
#include <retikd/optim/optim.hpp>
#include <retikd/pipeline/pretrained_teacher.hpp>
#include <retikd/ssl/ssl.hpp>
#include <retikd/train/checkpoint.hpp>
#include <retikd/train/run_log.hpp>
#include <retikd/train/trainer_loop.hpp>

using namespace retikd;

namespace {

struct Options {
  std::string data_root, manifest, split = "train", out = "runs/ijepa";
  bool synthetic = false;
  int64_t img = 112, patch = 8, dim = 192, depth = 6, heads = 3;
  double mlp_ratio = 4.0;
  int64_t pred_dim = 96, pred_depth = 4, pred_heads = 3;
  int64_t epochs = 10, batch = 32, warmup_epochs = 1;
  double lr = 1e-3, min_lr_ratio = 1e-3, wd_start = 0.04, wd_end = 0.4, ema_start = 0.996, ema_end = 1.0;
  double clip = 0;  // 0: no gradient clipping
  std::string loss = "smooth_l1";
  int64_t seed = 0, workers = 1, limit = 0, val_images = 64;
  int64_t synthetic_train = 480, synthetic_test = 120;
  int64_t epochs_this_call = 0;  // > 0: stop (as if killed) after that many epochs
  bool resume = false, restart = false, quiet = false;
  int64_t export_img = 0;
  bool probe = false;
  std::string probe_only;  // an encoder file: probe it (and the random encoder), no pretraining
  std::string pooling = "mean";
  int64_t probe_limit = 0;  // > 0: seeded subsets of the probe's train / test splits (timing)
  std::string arch = "vit";  // vit (the options above) | dinov2_s14
  std::string init;          // initial encoder weights (dinov2_s14: .onnx or .safetensors)
  bool distributed = false;  // data-parallel over MPI even for one process (on by itself under mpirun / srun)
  double dist_timeout = 0;   // > 0: seconds a collective may wait (docs/distributed.md)
};

void usage() {
  std::printf(
      "pretrain_ijepa — I-JEPA self-supervised pretraining of the ViT teacher (labels ignored)\n"
      "usage: pretrain_ijepa [--data ROOT] [--manifest FILE] [--synthetic] [--split train] [--out DIR]\n"
      "                      [--img 112] [--patch 8] [--dim 192] [--depth 6] [--heads 3] [--mlp-ratio 4]\n"
      "                      [--pred-dim 96] [--pred-depth 4] [--pred-heads 3] [--loss smooth_l1|l2]\n"
      "                      [--epochs 10] [--batch 32] [--lr 1e-3] [--min-lr-ratio 1e-3] [--warmup-epochs 1]\n"
      "                      [--wd-start 0.04] [--wd-end 0.4] [--ema-start 0.996] [--ema-end 1.0] [--clip X]\n"
      "                      [--seed 0] [--workers 1] [--limit N] [--val-images 64] [--resume | --restart]\n"
      "                      [--epochs-this-call N] [--export-img N] [--probe] [--probe-only FILE]\n"
      "                      [--pooling mean|cls] [--probe-limit N] [--quiet] [--arch vit|dinov2_s14] [--init FILE]\n"
      "                      [--distributed] [--dist-timeout S]\n"
      "\n"
      "  --data ROOT      image root (split.tsv manifest or class folders); default ../shared/data/fundus4 when\n"
      "                   its split.tsv exists, else the synthetic fundus set\n"
      "  --split NAME     the split whose images are pretrained on (labels are never read for it)\n"
      "  Numbers are checked strictly against their ranges (e.g. --img 8-1024, --batch 1-4096, --epochs\n"
      "  1-100000, --workers 0-64, --ema-* 0-1); 0 means \"none\" only for --limit, --probe-limit, --clip,\n"
      "  --export-img and --epochs-this-call\n"
      "  --limit N        a seeded subset of N pretraining images (timing runs; 0: all)\n"
      "  --val-images N   held-out images (val split) whose pretext loss with fixed masks selects best.safetensors\n"
      "  --resume         continue OUT/last.safetensors (same settings); --restart discards it\n"
      "  --epochs-this-call N  stop after N epochs, as if killed; run again with --resume\n"
      "  --export-img N   also write OUT/encoder_<N>px.safetensors, the position embedding resampled to N px\n"
      "  --probe          after pretraining: linear probe (logistic regression on frozen pooled features, fitted\n"
      "                   on the train split, scored on the test split) of the context and target encoders and\n"
      "                   of their random init\n"
      "  --probe-only F   probe encoder file F (and the random init of the same architecture); no pretraining\n"
      "  --arch dinov2_s14  the encoder is DINOv2 ViT-S/14 (patch 14; --img a multiple of 14; --patch, --dim,\n"
      "                   --depth, --heads do not apply); with --init FILE (.onnx or .safetensors) its pretrained\n"
      "                   weights start both encoders (domain-adaptive continued pretraining)\n"
      "  --distributed    data-parallel over MPI even for one process (on by itself under mpirun / srun with\n"
      "                   several processes); --batch stays the global batch; rank 0 writes every file\n"
      "Output: OUT/encoder.safetensors is a ViT checkpoint (timm names) for distill_retina --teacher-init.\n");
}

// ---- data -------------------------------------------------------------------------------------------------

struct Sources {
  std::shared_ptr<const data::ImageSource> pretrain, val, probe_train, probe_test;
  std::string description;
};


Sources open_sources(const Options& o) {
  Sources s;
  std::string root = o.data_root;
  if (root.empty() && !o.synthetic && path_exists(shared_path("data/fundus4/split.tsv"))) root = shared_path("data/fundus4");
  const uint64_t seed = static_cast<uint64_t>(o.seed);
  if (!root.empty() && !o.synthetic) {
    RETIKD_CHECK(path_exists(root), "pretrain_ijepa: data root '", root, "' does not exist");
    const data::Dataset all = data::Dataset::open(root, o.manifest);
    const data::Dataset pre = data::random_subset(all.split(o.split), o.limit, seed);
    RETIKD_CHECK(pre.size() > 0, "pretrain_ijepa: ", root, " has no images in split '", o.split, "'");
    data::Dataset val = data::random_subset(all.split("val"), o.val_images, seed + 1);
    data::Dataset tr = data::random_subset(all.split("train"), o.probe_limit, seed + 2);
    data::Dataset te = data::random_subset(all.split("test"), o.probe_limit, seed + 3);
    s.pretrain = std::make_shared<data::FileSource>(pre);
    if (val.size() > 0 && o.val_images > 0) s.val = std::make_shared<data::FileSource>(val);
    if (tr.size() > 0) s.probe_train = std::make_shared<data::FileSource>(tr);
    if (te.size() > 0) s.probe_test = std::make_shared<data::FileSource>(te);
    s.description = root + ": pretraining on split '" + o.split + "' (" + std::to_string(pre.size()) +
                    " images, labels unused), held-out val " + std::to_string(val.size()) + ", probe train " +
                    std::to_string(tr.size()) + " / test " + std::to_string(te.size());
  } else {
    data::SyntheticOptions so;
    so.size = static_cast<int>(std::max<int64_t>(o.img, 32));
    const int64_t n0 = o.limit > 0 ? std::min(o.limit, o.synthetic_train) : o.synthetic_train, n1 = o.synthetic_test;
    const int64_t nv = std::min<int64_t>(o.val_images, 64);
    s.pretrain = std::make_shared<data::SyntheticSource>(n0, seed, so, 0);
    if (nv > 0) s.val = std::make_shared<data::SyntheticSource>(nv, seed, so, n0);
    s.probe_train = s.pretrain;
    s.probe_test = std::make_shared<data::SyntheticSource>(n1, seed, so, n0 + nv);
    s.description = "synthetic fundus set (seed " + std::to_string(seed) + ", " + std::to_string(so.size) +
                    " px): pretraining " + std::to_string(n0) + ", held-out " + std::to_string(nv) + ", probe test " +
                    std::to_string(n1);
  }
  return s;
}

std::shared_ptr<data::Loader> make_loader(std::shared_ptr<const data::ImageSource> src, const Options& o,
                                          data::TransformPtr transform, bool shuffle, const std::string& tag,
                                          bool sharded = false) {
  data::LoaderOptions lo;
  lo.batch_size = o.batch;
  if (sharded && dist::world().size() > 1) {  // this rank's shard and share of the global batch
    lo.batch_size = dist::local_batch_size(o.batch, dist::world());
    lo.num_shards = dist::world().size();
    lo.shard = dist::world().rank();
  }
  lo.num_workers = static_cast<int>(o.workers);
  lo.seed = static_cast<uint64_t>(o.seed);
  lo.shuffle = shuffle;
  lo.drop_last = shuffle;  // every training batch full: the masks of a batch share their block sizes anyway
  lo.preprocess = data::compose({data::make<data::Resize>(static_cast<int>(o.img)),
                                 data::make<data::CenterCrop>(static_cast<int>(o.img))});
  lo.transform = std::move(transform);
  lo.cache_file = o.out + "/.cache/" + tag + "-" + std::to_string(o.img) + ".bin";
  return std::make_shared<data::Loader>(std::move(src), lo);
}

// ---- model ------------------------------------------------------------------------------------------------

ssl::IJepaConfig model_config(const Options& o) {
  if (o.arch == "dinov2_s14") {
    RETIKD_CHECK(o.img % 14 == 0, "--img ", o.img, " must be a multiple of DINOv2's 14-pixel patch");
    ssl::IJepaConfig c;
    c.encoder = nn::ViTConfig::dinov2_small(0, o.img);
    c.sincos_position = false;  // the pretrained, learned position embedding
    c.predictor_dim = o.pred_dim;
    c.predictor_depth = o.pred_depth;
    c.predictor_heads = o.pred_heads;
    c.loss = ssl::parse_latent_loss(o.loss);
    return c;
  }
  RETIKD_CHECK(o.arch == "vit", "--arch must be vit or dinov2_s14, got '", o.arch, "'");
  RETIKD_CHECK(o.patch > 0 && o.img % o.patch == 0, "--img ", o.img, " must be a multiple of --patch ", o.patch);
  RETIKD_CHECK(o.dim % o.heads == 0 && o.dim % 4 == 0, "--dim ", o.dim, " must be a multiple of --heads ", o.heads,
               " and of 4");
  ssl::IJepaConfig c;
  c.encoder = nn::ViTConfig::tiny(0, o.img, o.patch);
  c.encoder.embed_dim = o.dim;
  c.encoder.num_heads = o.heads;
  c.encoder.depth = o.depth;
  c.encoder.mlp_ratio = o.mlp_ratio;
  c.predictor_dim = o.pred_dim;
  c.predictor_depth = o.pred_depth;
  c.predictor_heads = o.pred_heads;
  c.loss = ssl::parse_latent_loss(o.loss);
  return c;
}

std::map<std::string, std::string> encoder_metadata(const Options& o, int64_t img, int64_t epoch) {
  return {{"format", "retikd ViT state dict (timm names)"}, {"source", "pretrain_ijepa (I-JEPA context encoder)"},
          {"img_size", std::to_string(img)}, {"patch_size", std::to_string(o.patch)},
          {"embed_dim", std::to_string(o.dim)}, {"depth", std::to_string(o.depth)},
          {"num_heads", std::to_string(o.heads)}, {"epochs", std::to_string(epoch)}};
}

// ---- linear probe -----------------------------------------------------------------------------------------

struct ProbeRow {
  std::string name;
  ssl::LinearProbeResult r;
  double seconds = 0;
};

ProbeRow probe_encoder(const std::string& name, nn::VisionTransformer& vit, data::Loader& train, data::Loader& test,
                       ssl::ProbePooling pooling, std::FILE* log) {
  const auto t0 = std::chrono::steady_clock::now();
  if (log) std::fprintf(log, "probe: %s: extracting features...\n", name.c_str());
  const ssl::FeatureSet ftr = ssl::extract_features(vit, train, pooling);
  const ssl::FeatureSet fte = ssl::extract_features(vit, test, pooling);
  ProbeRow row;
  row.name = name;
  const std::vector<std::string> names(data::class_names().begin(), data::class_names().end());
  row.r = ssl::linear_probe(ftr, fte, 4, {}, names);
  row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (log)
    std::fprintf(log,
                 "probe: %-28s test accuracy %.4f  macro-F1 %.4f  (train acc %.4f; %d train / %d test; fit %s in %lld "
                 "steps, |grad| %.1e; %.0f s)\n",
                 name.c_str(), row.r.test.accuracy, row.r.test.macro_f1, row.r.train.accuracy,
                 static_cast<int>(ftr.size()), static_cast<int>(fte.size()),
                 row.r.converged ? "converged" : "NOT converged", static_cast<long long>(row.r.iterations),
                 row.r.grad_norm, row.seconds);
  return row;
}

// Probes each (name, encoder) in turn; the first row's per-class table goes into probe.md.
std::vector<ProbeRow> run_probe(const Options& o, const Sources& src,
                                const std::vector<std::pair<std::string, nn::VisionTransformer*>>& encoders,
                                std::FILE* log) {
  RETIKD_CHECK(src.probe_train && src.probe_test, "--probe: the data has no train or no test split");
  const data::TransformPtr plain = data::compose({data::make<data::Normalize>()});
  auto tr = make_loader(src.probe_train, o, plain, false, "probe_train");
  auto te = make_loader(src.probe_test, o, plain, false, "probe_test");
  const ssl::ProbePooling pooling = ssl::parse_probe_pooling(o.pooling);
  std::vector<ProbeRow> rows;
  for (const auto& e : encoders) rows.push_back(probe_encoder(e.first, *e.second, *tr, *te, pooling, log));

  io::Json j = io::Json::object();
  j["pooling"] = o.pooling;
  j["data"] = src.description;
  io::Json arr = io::Json::array();
  std::string md = "| encoder | test accuracy | test macro-F1 | train accuracy | fit steps (converged) | seconds |\n"
                   "|---|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows) {
    io::Json e = io::Json::object();
    e["encoder"] = r.name;
    e["test_accuracy"] = r.r.test.accuracy;
    e["test_macro_f1"] = r.r.test.macro_f1;
    e["train_accuracy"] = r.r.train.accuracy;
    e["train_macro_f1"] = r.r.train.macro_f1;
    e["seconds"] = r.seconds;
    e["fit_iterations"] = r.r.iterations;
    e["fit_grad_norm"] = r.r.grad_norm;
    e["fit_converged"] = r.r.converged;
    arr.push_back(e);
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %.4f | %.4f | %.4f | %lld (%s) | %.0f |\n", r.name.c_str(),
                  r.r.test.accuracy, r.r.test.macro_f1, r.r.train.accuracy, static_cast<long long>(r.r.iterations),
                  r.r.converged ? "yes" : "no", r.seconds);
    md += line;
  }
  j["rows"] = arr;
  metrics::MarkdownReport::write_text(o.out + "/probe.json", j.dump() + "\n");
  metrics::MarkdownReport::write_text(o.out + "/probe.md",
                                      "# Linear probe (" + o.pooling + "-pooled frozen features, logistic regression)\n\n" +
                                          src.description + "\n\n" + md + "\nPer-class metrics of the first encoder:\n\n" +
                                          metrics::metrics_table_markdown(rows[0].r.test));
  return rows;
}

// ---- per-step loss file ------------------------------------------------------------------------------------

// Keeps the lines of steps.tsv up to `global_step` (a resumed run recomputes the steps after it).
void trim_steps_file(const std::string& path, int64_t global_step) {
  std::ifstream in(path);
  if (!in) return;
  std::string text, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == 's') {  // header
      text += line + "\n";
      continue;
    }
    int64_t step = 0;  // a line whose first column is not a step number is kept, as before
    if (!cli::parse_int64(line.substr(0, line.find('\t')), step) || step <= global_step) text += line + "\n";
  }
  metrics::MarkdownReport::write_text(path, text);
}

std::vector<std::pair<double, double>> read_steps(const std::string& path) {
  std::vector<std::pair<double, double>> v;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == 's') continue;
    std::istringstream ls(line);
    double step = 0, epoch = 0, loss = 0;
    if (ls >> step >> epoch >> loss) v.emplace_back(step, loss);
  }
  return v;
}

class StopRequested : public Error {
 public:
  explicit StopRequested(const std::string& w) : Error(w) {}
};

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Options o;
  bool pred_given = false;
  std::unique_ptr<dist::Session> session;
  try {
    cli::ArgReader args(argc, argv);
    while (args.next()) {
      const std::string& a = args.arg();
      // Strict, bounded numbers (core/cli_args.hpp): a bad one is a usage error, exit status 2.
      if (a == "--help" || a == "-h") {
        usage();
        return 0;
      } else if (a == "--data") o.data_root = args.value();
      else if (a == "--manifest") o.manifest = args.value();
      else if (a == "--synthetic") o.synthetic = true;
      else if (a == "--split") o.split = args.value();
      else if (a == "--out") o.out = args.value();
      else if (a == "--img") o.img = args.integer(8, 1024);
      else if (a == "--patch") o.patch = args.integer(1, 64);
      else if (a == "--dim") o.dim = args.integer(1, 4096);
      else if (a == "--depth") o.depth = args.integer(1, 64);
      else if (a == "--heads") o.heads = args.integer(1, 64);
      else if (a == "--mlp-ratio") o.mlp_ratio = args.real(0.25, 16.0);
      else if (a == "--pred-dim") o.pred_dim = args.integer(1, 4096), pred_given = true;
      else if (a == "--pred-depth") o.pred_depth = args.integer(1, 64);
      else if (a == "--pred-heads") o.pred_heads = args.integer(1, 64), pred_given = true;
      else if (a == "--loss") o.loss = args.value();
      else if (a == "--epochs") o.epochs = args.integer(1, 100000);
      else if (a == "--batch") o.batch = args.integer(1, 4096);
      else if (a == "--lr") o.lr = args.real(1e-9, 10.0);
      else if (a == "--min-lr-ratio") o.min_lr_ratio = args.real(0.0, 1.0);
      else if (a == "--warmup-epochs") o.warmup_epochs = args.integer(0, 100000);
      else if (a == "--wd-start") o.wd_start = args.real(0.0, 10.0);
      else if (a == "--wd-end") o.wd_end = args.real(0.0, 10.0);
      else if (a == "--ema-start") o.ema_start = args.real(0.0, 1.0);
      else if (a == "--ema-end") o.ema_end = args.real(0.0, 1.0);
      else if (a == "--clip") o.clip = args.real(0.0, 1e6);
      else if (a == "--seed") o.seed = args.integer(0, std::numeric_limits<int64_t>::max());
      else if (a == "--workers") o.workers = args.integer(0, 64);
      else if (a == "--limit") o.limit = args.integer(0, 1000000000);
      else if (a == "--val-images") o.val_images = args.integer(0, 1000000);
      else if (a == "--synthetic-train") o.synthetic_train = args.integer(1, 1000000);
      else if (a == "--synthetic-test") o.synthetic_test = args.integer(1, 1000000);
      else if (a == "--epochs-this-call") o.epochs_this_call = args.integer(0, 100000);
      else if (a == "--resume") o.resume = true;
      else if (a == "--restart") o.restart = true;
      else if (a == "--export-img") o.export_img = args.integer(0, 1024);
      else if (a == "--probe") o.probe = true;
      else if (a == "--probe-only") o.probe_only = args.value();
      else if (a == "--pooling") o.pooling = args.value();
      else if (a == "--probe-limit") o.probe_limit = args.integer(0, 1000000000);
      else if (a == "--quiet") o.quiet = true;
      else if (a == "--arch") o.arch = args.value();
      else if (a == "--init") o.init = args.value();
      else if (a == "--distributed") o.distributed = true;
      else if (a == "--dist-timeout") o.dist_timeout = args.real(1.0, 1e6);
      else {
        std::fprintf(stderr, "pretrain_ijepa: unknown option '%s' (see --help)\n", a.c_str());
        return 2;
      }
    }
    RETIKD_CHECK(!(o.resume && o.restart), "--resume and --restart exclude each other");
    RETIKD_CHECK(o.epochs >= 1 && o.batch >= 1, "--epochs and --batch must be at least 1");
    RETIKD_CHECK(o.ema_start <= 1.0 && o.ema_end <= 1.0, "--ema-start / --ema-end must be at most 1");
    RETIKD_CHECK(o.min_lr_ratio <= 1.0, "--min-lr-ratio must be at most 1");
    ssl::parse_probe_pooling(o.pooling);
    if (o.arch == "dinov2_s14") {
      // DINOv2's own geometry and a predictor half its width, unless given
      o.patch = 14;
      o.dim = 384;
      o.depth = 12;
      o.heads = 6;
      if (!pred_given) {
        o.pred_dim = 192;
        o.pred_heads = 6;
      }
      RETIKD_CHECK(o.export_img == 0, "--export-img does not apply to dinov2_s14 (its encoder keeps the 37x37 "
                   "position embedding and resamples it itself)");
    }
    RETIKD_CHECK(o.init.empty() || o.arch == "dinov2_s14", "--init applies to --arch dinov2_s14");
    session.reset(new dist::Session({o.distributed, o.dist_timeout}));  // MPI under mpirun / srun
    const bool lead = dist::is_lead();  // rank 0 alone prints and writes files
    std::FILE* log = o.quiet || !lead ? nullptr : stdout;
    train::detail::make_directories(o.out + "/.cache");

    const Sources src = open_sources(o);
    if (log) std::fprintf(log, "== pretrain_ijepa: output %s\ndata: %s\n", o.out.c_str(), src.description.c_str());
    const ssl::IJepaConfig cfg = model_config(o);
    Generator init(static_cast<uint64_t>(o.seed));
    ssl::IJepa model(cfg, init);
    if (!o.init.empty()) {
      const std::string what = pipeline::load_dinov2_weights(*model.context_encoder, o.init);
      model.target_encoder->load_state_dict(model.context_encoder->state_dict());
      if (log) std::fprintf(log, "init: both encoders from %s\n", what.c_str());
    }
    // The encoder before any update: the probe's "random" baseline (same architecture and initialisation).
    Generator init_again(static_cast<uint64_t>(o.seed));
    nn::VisionTransformer random_encoder(cfg.encoder, init_again);
    if (cfg.sincos_position) ssl::use_sincos_position_embedding(random_encoder, true);
    if (log)
      std::fprintf(log, "model: encoder %s (D %lld, depth %lld, %lld heads, %lld parameters), %lldx%lld grid; "
                        "predictor D %lld depth %lld (%lld parameters); loss %s\n",
                   model.context_encoder->arch().c_str(), static_cast<long long>(o.dim), static_cast<long long>(o.depth),
                   static_cast<long long>(o.heads), static_cast<long long>(model.context_encoder->num_parameters()),
                   static_cast<long long>(o.img / o.patch), static_cast<long long>(o.img / o.patch),
                   static_cast<long long>(o.pred_dim), static_cast<long long>(o.pred_depth),
                   static_cast<long long>(model.predictor->num_parameters()), ssl::latent_loss_name(cfg.loss));

    if (!o.probe_only.empty()) {
      if (!lead) return 0;
      nn::VisionTransformer enc(cfg.encoder, init_again);
      io::load_module(o.probe_only, enc);
      run_probe(o, src, {{o.probe_only, &enc}, {"random init (same seed)", &random_encoder}}, log);
      if (log) std::fprintf(log, "probe: wrote %s/probe.md and probe.json\n", o.out.c_str());
      return 0;
    }

    // ---- pretraining ------------------------------------------------------------------------------------
    const data::TransformPtr augment = data::compose(
        {data::make<data::RandomResizedCrop>(static_cast<int>(o.img), std::make_pair(0.3, 1.0)),
         data::make<data::RandomHorizontalFlip>(), data::make<data::Normalize>()});
    auto loader = make_loader(src.pretrain, o, augment, true, "pretrain", /*sharded=*/true);
    std::shared_ptr<data::Loader> val_loader;
    if (src.val) val_loader = make_loader(src.val, o, data::compose({data::make<data::Normalize>()}), false, "val");
    const int64_t steps_per_epoch = loader->num_batches();
    RETIKD_CHECK(steps_per_epoch >= 1, "pretrain_ijepa: fewer images than one batch of ", o.batch);
    const int64_t total_steps = steps_per_epoch * o.epochs;
    const int64_t warmup_steps = std::min(total_steps, steps_per_epoch * o.warmup_epochs);

    optim::AdamWOptions ao;
    ao.lr = o.lr;
    ao.weight_decay = o.wd_start;
    optim::AdamW opt(model.param_groups(o.lr, o.wd_start), ao);
    optim::WarmupCosineSchedule lr_sched(opt, warmup_steps, total_steps, o.min_lr_ratio);
    std::vector<Var> trained;
    for (const auto& g : opt.groups()) trained.insert(trained.end(), g.params.begin(), g.params.end());
    dist::GradientReducer ddp(dist::world(), trained);  // one process: does nothing
    ssl::IJepaSchedule js;
    js.total_steps = total_steps;
    js.ema_start = o.ema_start;
    js.ema_end = o.ema_end;
    js.wd_start = o.wd_start;
    js.wd_end = o.wd_end;

    train::TrainState state;
    state.add_module("context_encoder", *model.context_encoder);
    state.add_module("target_encoder", *model.target_encoder);
    state.add_module("predictor", *model.predictor);
    state.add_optimizer("adamw", opt);
    state.add_schedule("lr", lr_sched);
    state.add_generator("encoder_noise", *model.context_encoder->noise());
    train::LoopOptions lo;
    lo.stage = "ijepa";
    lo.run_dir = o.out;
    lo.epochs = o.epochs;
    lo.select_metric = "loss";
    lo.maximize = false;
    lo.existing = o.resume ? train::ExistingRun::resume : o.restart ? train::ExistingRun::restart : train::ExistingRun::fail;
    lo.out = o.quiet ? nullptr : stderr;
    lo.steps_per_epoch = steps_per_epoch;
    lo.config = {{"img", std::to_string(o.img)}, {"patch", std::to_string(o.patch)}, {"dim", std::to_string(o.dim)},
                 {"depth", std::to_string(o.depth)}, {"heads", std::to_string(o.heads)},
                 {"mlp_ratio", io::format_double(o.mlp_ratio)},
                 {"pred", std::to_string(o.pred_dim) + "/" + std::to_string(o.pred_depth) + "/" + std::to_string(o.pred_heads)},
                 {"loss", o.loss}, {"epochs", std::to_string(o.epochs)}, {"batch", std::to_string(o.batch)},
                 {"lr", io::format_double(o.lr)}, {"min_lr_ratio", io::format_double(o.min_lr_ratio)},
                 {"warmup_epochs", std::to_string(o.warmup_epochs)},
                 {"wd", io::format_double(o.wd_start) + "->" + io::format_double(o.wd_end)},
                 {"ema", io::format_double(o.ema_start) + "->" + io::format_double(o.ema_end)},
                 {"clip", io::format_double(o.clip)}, {"seed", std::to_string(o.seed)},
                 {"data", src.description}};
    train::TrainerLoop loop(lo, state);

    const std::string steps_path = o.out + "/steps.tsv";
    std::FILE* steps_file = nullptr;
    int64_t epochs_run = 0;
    const uint64_t mask_seed = static_cast<uint64_t>(o.seed) ^ 0x6d61736b73ULL;  // "masks"
    auto train_one_epoch = [&](int64_t epoch) {
      if (o.epochs_this_call > 0 && epochs_run >= o.epochs_this_call)
        throw StopRequested("stopped before epoch " + std::to_string(epoch) + " (--epochs-this-call " +
                            std::to_string(o.epochs_this_call) + "); run again with --resume to continue");
      if (lead && !steps_file) {
        // After a resume the restored global step says which step lines are still valid.
        trim_steps_file(steps_path, state.global_step);
        steps_file = std::fopen(steps_path.c_str(), "a");
        RETIKD_CHECK(steps_file != nullptr, "pretrain_ijepa: cannot open ", steps_path);
        if (std::ftell(steps_file) == 0) std::fprintf(steps_file, "step\tepoch\tloss\tlr\tweight_decay\tmomentum\n");
      }
      model.context_encoder->train();
      model.predictor->train();
      loader->start_epoch(epoch);
      data::Batch b;
      train::EpochStats st;
      double sum = 0;
      int64_t n = 0;
      while (loader->next(b)) {
        const int64_t step = state.global_step;
        // Masks of (seed, epoch, batch, rank): a resumed run draws the same ones without storing a generator.
        const uint64_t rank_bits = static_cast<uint64_t>(dist::world().rank()) << 40;
        Generator mg =
            Generator::derive(mask_seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(b.number) | rank_bits);
        const ssl::BatchMasks masks = model.masker().sample(b.size(), mg);
        const double wd = js.weight_decay(step);
        for (auto& g : opt.groups())
          if (g.name == "decay") g.weight_decay = wd;
        opt.zero_grad();
        Var loss = model.forward(Var(b.images), masks).loss;
        const double l = loop.check_loss(loss.item<double>());  // data-parallel: the mean over the ranks
        loss.backward();
        if (o.clip > 0) {
          std::vector<Var> ps;
          for (const auto& g : opt.groups()) ps.insert(ps.end(), g.params.begin(), g.params.end());
          optim::clip_grad_norm(ps, o.clip);
        }
        const double lr_now = opt.groups().front().lr;
        opt.step();
        const double m = js.momentum(step);
        model.update_target(m);
        lr_sched.step();
        ++state.global_step;
        if (steps_file) {
          std::fprintf(steps_file, "%lld\t%lld\t%.6g\t%.6g\t%.6g\t%.6g\n", static_cast<long long>(state.global_step),
                       static_cast<long long>(epoch), l, lr_now, wd, m);
          std::fflush(steps_file);
        }
        sum += l * static_cast<double>(b.size());
        n += b.size();
        loop.step_done(l);
      }
      ++epochs_run;
      st.loss = sum / static_cast<double>(std::max<int64_t>(1, n));
      st.samples = n;
      st.extra["weight_decay"] = js.weight_decay(state.global_step);
      st.extra["momentum"] = js.momentum(state.global_step);
      return st;
    };
    auto evaluate = [&](int64_t) {
      train::EvalMetrics m;
      {
        model.context_encoder->eval();
        model.predictor->eval();
        NoGradGuard ng;
        val_loader->start_epoch(0);
        data::Batch b;
        double sum = 0;
        int64_t n = 0;
        while (val_loader->next(b)) {
          Generator mg = Generator::derive(mask_seed, 0xffffffffULL, static_cast<uint64_t>(b.number));  // fixed masks
          const ssl::BatchMasks masks = model.masker().sample(b.size(), mg);
          sum += model.forward(Var(b.images), masks).loss.item<double>() * static_cast<double>(b.size());
          n += b.size();
        }
        m["loss"] = sum / static_cast<double>(std::max<int64_t>(1, n));
      }
      return m;
    };
    RETIKD_CHECK(val_loader != nullptr, "pretrain_ijepa: no held-out images for the pretext loss (--val-images > 0 "
                 "and a 'val' split are needed)");
    const auto t0 = std::chrono::steady_clock::now();
    train::LoopResult res;
    try {
      res = loop.run(train_one_epoch, evaluate);
    } catch (const StopRequested& e) {
      if (steps_file) std::fclose(steps_file);
      std::fprintf(stderr, "pretrain_ijepa: %s\n", e.what());
      return 3;
    }
    if (steps_file) std::fclose(steps_file);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!lead) return 0;  // rank 0 writes the encoders, the report and runs the probe

    // ---- outputs ------------------------------------------------------------------------------------------
    const std::string enc_path = o.out + "/encoder.safetensors";
    io::save_module(enc_path, *model.context_encoder, encoder_metadata(o, o.img, res.last_epoch));
    if (log) std::fprintf(log, "encoder: %s (the context encoder after epoch %lld; distill_retina --teacher-init)\n",
                          enc_path.c_str(), static_cast<long long>(res.last_epoch));
    // The EMA encoder too: the reference evaluates that one; either loads as a teacher.
    io::save_module(o.out + "/target_encoder.safetensors", *model.target_encoder, encoder_metadata(o, o.img, res.last_epoch));
    if (o.export_img > 0) {
      const std::string p = o.out + "/encoder_" + std::to_string(o.export_img) + "px.safetensors";
      io::save_safetensors(p, ssl::encoder_state_dict_at(*model.context_encoder, o.export_img),
                           encoder_metadata(o, o.export_img, res.last_epoch));
      if (log) std::fprintf(log, "encoder: %s (position embedding resampled to %lld px)\n", p.c_str(),
                            static_cast<long long>(o.export_img));
    }

    metrics::MarkdownReport rep(o.out);
    rep.heading(1, "I-JEPA pretraining");
    rep.paragraph("Data: " + src.description + ".\n\nEncoder " + model.context_encoder->arch() + " (D " +
                  std::to_string(o.dim) + ", depth " + std::to_string(o.depth) + ", " + std::to_string(o.heads) +
                  " heads, " + std::to_string(o.img / o.patch) + "x" + std::to_string(o.img / o.patch) +
                  " patches), predictor D " + std::to_string(o.pred_dim) + " depth " + std::to_string(o.pred_depth) +
                  "; " + std::to_string(o.epochs) + " epochs of " + std::to_string(steps_per_epoch) + " steps, batch " +
                  std::to_string(o.batch) + ", AdamW lr " + io::format_double(o.lr) + " (warm-up " +
                  std::to_string(o.warmup_epochs) + " epochs, cosine), weight decay " + io::format_double(o.wd_start) +
                  " -> " + io::format_double(o.wd_end) + ", EMA " + io::format_double(o.ema_start) + " -> " +
                  io::format_double(o.ema_end) + ", loss " + o.loss + ". This call: " +
                  data::format_duration(seconds) + (res.resumed ? " (resumed)" : "") + ".");
    const metrics::TrainingCurves curves = train::read_training_curves(loop.log_path());
    rep.figure("ijepa_loss_epochs.svg", metrics::loss_curves_svg(curves, "I-JEPA loss per epoch (validation: held-out images, fixed masks)"),
               "loss per epoch");
    const auto steps = read_steps(steps_path);
    if (!steps.empty()) {
      metrics::Series s;
      s.name = "train (per step)";
      s.markers = false;
      metrics::Series avg;
      avg.name = "moving average (" + std::to_string(std::max<int64_t>(1, steps_per_epoch / 2)) + " steps)";
      const std::size_t win = static_cast<std::size_t>(std::max<int64_t>(1, steps_per_epoch / 2));
      double acc = 0;
      for (std::size_t i = 0; i < steps.size(); ++i) {
        s.x.push_back(steps[i].first);
        s.y.push_back(steps[i].second);
        acc += steps[i].second;
        if (i >= win) acc -= steps[i - win].second;
        avg.x.push_back(steps[i].first);
        avg.y.push_back(acc / static_cast<double>(std::min(i + 1, win)));
      }
      avg.markers = false;
      metrics::ChartOptions co;
      co.title = "I-JEPA training loss per step";
      co.x_label = "step";
      co.y_label = "loss";
      rep.figure("ijepa_loss_steps.svg", metrics::line_chart_svg({s, avg}, co), "loss per step");
    }
    if (o.probe) {
      const auto rows = run_probe(o, src, {{"I-JEPA context encoder", model.context_encoder.get()},
                                           {"I-JEPA target (EMA) encoder", model.target_encoder.get()},
                                           {"random init (same seed)", &random_encoder}}, log);
      rep.heading(2, "Linear probe");
      std::string md = "| encoder | test accuracy | test macro-F1 |\n|---|---:|---:|\n";
      for (const auto& r : rows)
        md += "| " + r.name + " | " + metrics::format_metric(r.r.test.accuracy, 4) + " | " +
              metrics::format_metric(r.r.test.macro_f1, 4) + " |\n";
      rep.raw(md + "\n");
    }
    const std::string rp = rep.write();
    if (log) std::fprintf(log, "report: %s\n", rp.c_str());
    return 0;
  } catch (const cli::ArgumentError& e) {
    std::fprintf(stderr, "pretrain_ijepa: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pretrain_ijepa: error%s: %s\n",
                 dist::world().size() > 1 ? (" (rank " + std::to_string(dist::world().rank()) + ")").c_str() : "",
                 e.what());
    if (session) session->abort(1);  // the other ranks would wait for this one until the timeout
    return 1;
  }
}
