# xattr — two commands from a fresh machine: `make run` and `make test`.
# Both create .venv if missing and install what they need from the package registry.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
XATTR := $(VENV)/bin/xattr
SCALE ?= tiny
export OMP_NUM_THREADS ?= 2

.PHONY: setup setup-dev run test test-slow mutants lint bench gpu-check clean-outputs help

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel

# torch>=2.14 is pinned in pyproject.toml: the registry's torchvision needs it (the older CPU-only
# torch 2.13 wheel some machines carry breaks torchvision's operators at import). The registry's
# torch build ships CUDA libraries but runs on the CPU here.
$(VENV)/.installed: pyproject.toml setup.py | $(PY)
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py | $(PY)
	$(PY) -m pip install -e ".[dev]"
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed  ## create .venv and install the package
setup-dev: $(VENV)/.installed-dev  ## create .venv and install with dev extras

run: setup  ## run the default job (embedded shapes dataset, no downloads)
	$(XATTR) run $(ARGS)

test: setup-dev  ## run the fast test suite (offline, CPU)
	$(PY) -m pytest -n 2 --dist loadfile

test-slow: setup-dev  ## run only the heavy tests
	$(PY) -m pytest -m slow -n 2 --dist loadfile

# Mutation testing (docs/testing.md): mutmut copies the tree into mutants/, mutates the modules [tool.mutmut]
# only_mutate names, maps tests to functions with one stats run, then runs each mutant against the tests that
# reach it. Results are kept in mutants/: a second run only tests mutants without a verdict (rm -rf mutants
# to start over). MUTANTS_PATHS=xattr/info/channel.py (files or folders) re-tests only those modules' mutants.
MUTANTS_PATHS ?=
MUTANTS_CHILDREN ?= 2
mutants_globs = $(foreach p,$(MUTANTS_PATHS),'$(subst /,.,$(basename $(patsubst %/,%,$(p)))).*')
mutants: setup-dev  ## mutation testing (mutmut) of xattr/info, diffib, token bottleneck, xattr/metrics; table in mutants/report.md
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $(MUTANTS_CHILDREN) $(mutants_globs)
	$(PY) scripts/mutation_report.py --out mutants/report.md $(if $(MUTANTS_PATHS),--paths $(MUTANTS_PATHS))

lint: setup-dev  ## ruff
	$(VENV)/bin/ruff check xattr tests scripts

BENCH_ARGS ?= --quick
bench: setup  ## every scripts/bench_*.py side by side with its competitor, ratios printed (BENCH_ARGS= for full size)
	@for script in scripts/bench_*.py; do echo "== $$script $(BENCH_ARGS)"; $(PY) $$script $(BENCH_ARGS) || exit 1; done

# no setup prerequisite: on a lent GPU machine nothing is installed (the script finds .venv or python3)
gpu-check:  ## on a machine with a CUDA GPU: `cuda` tests + every benchmark on the GPU, logs + summary.md in OUT= (default gpu_check_out/)
	bash scripts/gpu_check.sh

clean-outputs:  ## remove run folders
	rm -rf outputs/run outputs/multirun

# ---- vitxai ----
bench-vitxai: setup  ## transformer baselines (Rollout, Generic, Chefer-LRP, Beyond, ViT-CX, IIA): images/s on tiny_vit
	$(PY) scripts/bench_vitxai.py --quick

# ---- diffib ----
# DiffIB (Chen et al., AAAI 2025) Tables 1-4 and Fig. 4. SCALE=tiny: tiny_cnn on shapes, 100 test images, CPU, minutes.
# SCALE=paper: VGG16 (ImageNet weights) on 1,000 ImageNet val images / FSS-1000 (needs weights + data).
# Methods that are not installed (no conf/method/<name>.yaml) are skipped.
DIFFIB_METHODS ?= diffib iba input_iba integrated_gradients guided_backprop deeplift hsic saliency
DIFFIB_OUT ?= outputs/diffib/$(SCALE)
# Fig. 4 re-fits DiffIB once per randomised layer. SCALE=tiny: 25 images, the paper's cascading (top-down)
# randomisation only (6 fits; `mode=both` adds the independent one, 12 fits); SCALE=paper: the experiment's
# 1,000 images, both modes.
SANITY_IMAGES_tiny := 25
SANITY_MODE_tiny := cascading
diffib_comma := ,
diffib_space := $(empty) $(empty)
DIFFIB_AVAILABLE = $(subst $(diffib_space),$(diffib_comma),$(strip $(foreach m,$(DIFFIB_METHODS),$(if $(wildcard conf/method/$(m).yaml),$(m)))))
DIFFIB_EXP = experiment=diffib_$(SCALE)
DIFFIB_REPORT = $(XATTR) report $(DIFFIB_OUT)/$(1) --paper xattr/paper/diffib.csv --out $(DIFFIB_OUT)/$(1) --paired diffib

.PHONY: table-mnim table-dauc table-box table-seg figure-sanity diffib-tables diffib-test tune-diffib tune-baselines denoiser-mmse

# Tables 1-3 score the same maps: one run per method on the test images with the three metrics, shared by the
# three targets (the second and third find the runs complete: resume=true). At SCALE=tiny the shapes test images
# have boxes and exact masks, so Table 4 (seg ratio) is scored on the same maps too; at SCALE=paper it is its own
# run on FSS-1000. The paper's substrates: MNIM inserts into noise drawn per image, DAUC inserts into a blur and
# deletes to noise (conf/metric/*.yaml).
DIFFIB_TEST_METRICS_tiny := mnim,dauc,box_ratio,seg_ratio
DIFFIB_TEST_METRICS_paper := mnim,dauc,box_ratio
diffib-test: setup  ## DiffIB Tables 1-3 (tiny: 1-4) on the test images: every metric of every method in one run each
	$(XATTR) run -m $(DIFFIB_EXP) method=$(DIFFIB_AVAILABLE) 'metric=[$(DIFFIB_TEST_METRICS_$(SCALE))]' resume=true \
		hydra.sweep.dir=$(DIFFIB_OUT)/test

table-mnim: diffib-test  ## DiffIB Table 1: MNIM (share of pixel-channel values for 90% confidence) and its N = 0 tie rate, SCALE=tiny|paper
	$(call DIFFIB_REPORT,test)

table-dauc: diffib-test  ## DiffIB Table 2: insertion AUC (blur) - deletion AUC (noise)
	$(call DIFFIB_REPORT,test)

table-box: diffib-test  ## DiffIB Table 3: share of the MNIM-critical values inside the bounding boxes
	$(call DIFFIB_REPORT,test)

table-seg: diffib-seg-$(SCALE)  ## DiffIB Table 4: share of the MNIM-critical values inside the segmentation mask (tiny: shapes masks; paper: FSS-1000)

.PHONY: diffib-seg-tiny diffib-seg-paper
diffib-seg-tiny: diffib-test
	$(call DIFFIB_REPORT,test)

diffib-seg-paper: setup
	$(XATTR) run -m experiment=diffib_seg_paper method=$(DIFFIB_AVAILABLE) 'metric=[seg_ratio]' resume=true \
		hydra.sweep.dir=$(DIFFIB_OUT)/seg
	$(call DIFFIB_REPORT,seg)

# Tuning: on the val split (tiny) / ImageNet train images (paper), never on the tables' images
# (tests/test_tuning_splits.py). DiffIB gets 4 settings (beta; lr, alpha_init and steps are fixed: docs/diffib.md,
# "Tuning"); each baseline with a sensitive hyper-parameter gets at least as many; the lowest mean MNIM wins.
TUNE_OUT ?= outputs/diffib/$(SCALE)/tune
TUNE_EXP = experiment=tune_$(SCALE) method=$(1)
TUNE_EXP_diffib_tiny := experiment=diffib_sweep_beta
# per method: the sweep (its settings are the budget) and the keys its report is grouped by
TUNE_SWEEP_diffib := method.beta=0.01,0.03,0.1,0.3
TUNE_BY_diffib := beta
TUNE_SWEEP_iba := method.beta=1,3,10,30 method.optimization_steps=10,30
TUNE_BY_iba := beta optimization_steps
TUNE_SWEEP_integrated_gradients := method.n_steps=25,50,100,200
TUNE_BY_integrated_gradients := n_steps
TUNE_SWEEP_hsic := method.grid_size=5,7,9,11
TUNE_BY_hsic := grid_size
# $(call tune_method,<method>): sweep on the tuning split, report by its keys, write conf/tuned/<scale>_<method>.yaml
define tune_method
	$(XATTR) run -m $(or $(TUNE_EXP_$(1)_$(SCALE)),$(call TUNE_EXP,$(1))) $(TUNE_SWEEP_$(1)) resume=true \
		hydra.sweep.dir=$(TUNE_OUT)/$(1)
	$(XATTR) report $(TUNE_OUT)/$(1) $(foreach key,$(TUNE_BY_$(1)),--by method.$(key)) --out $(TUNE_OUT)/$(1)
	$(PY) scripts/select_tuned.py $(TUNE_OUT)/$(1) --method $(1) --scale $(SCALE)
endef

tune-diffib: setup  ## DiffIB beta on the tuning split (4 settings)
	$(call tune_method,diffib)

tune-baselines: setup  ## IBA beta x steps (8), IG steps (4), HSIC grid (4) on the tuning split
	$(call tune_method,iba)
	$(call tune_method,integrated_gradients)
	$(call tune_method,hsic)

figure-sanity: setup  ## DiffIB Fig. 4: SSIM of DiffIB maps under cascading layer randomisation
	$(XATTR) run -m $(DIFFIB_EXP) method=diffib 'metric=[randomization_sanity]' hydra.sweep.dir=$(DIFFIB_OUT)/sanity \
		$(if $(SANITY_IMAGES_$(SCALE)),dataset.n_samples=$(SANITY_IMAGES_$(SCALE)),) \
		$(if $(SANITY_MODE_$(SCALE)),metric.randomization_sanity.mode=$(SANITY_MODE_$(SCALE)),)
	$(call DIFFIB_REPORT,sanity)
	-$(PY) scripts/plot_diffib_sanity.py $(DIFFIB_OUT)/sanity

diffib-tables: table-mnim table-dauc table-box table-seg figure-sanity  ## all DiffIB tables

denoiser-mmse: setup  ## Eq. 14's denoiser: eps-MMSE vs Gaussian ground truth and the shapes bounds (CSV + PNG; DENOISER_MMSE_ARGS=--quick)
	$(PY) scripts/denoiser_mmse.py --cache-dir .cache --out $(DIFFIB_OUT)/denoiser_mmse $(DENOISER_MMSE_ARGS)

# ---- metrics ----
.PHONY: bench-metrics
bench-metrics: setup  ## metrics benchmark: insertion/deletion vs RISE loop, ROAD vs grad-cam, MNIM passes
	$(PY) scripts/bench_metrics.py --quick

# ---- ib ----
IB_IMAGES_tiny := 64
IB_IMAGES_paper := 1000
IB_STATS_tiny := 1000
IB_STATS_paper := 10000
bench-ib: setup  ## IBA joint vs one-at-a-time vs reference-style loop; HSIC/RISE images/s (CPU)
	$(PY) scripts/bench_ib.py --quick
ib-segratio: setup  ## IBA vs saliency segmentation (energy) ratio on shapes with the trained tiny_cnn
	$(PY) scripts/ib_segratio.py --n-images $(IB_IMAGES_$(SCALE)) --n-samples $(IB_STATS_$(SCALE)) --cache-dir .cache

# ---- Info-Decomp backbones: what the trained tiny_t2i learned (docs/infodecomp.md) ----
# The first xattr run trains tiny_t2i on shapes_captions on first use (cached; 1,000 steps of batch 64).
T2I_CHECK_IMAGES ?= 100
T2I_CHECK_DRAWS ?= 100
T2I_OUT ?= outputs/infodecomp/tiny
.PHONY: t2i-checks
t2i-checks: setup  ## tiny_t2i on 100 shapes_captions test images: info_cmi mass inside the word's mask, MMSE gap, caption retrieval
	$(XATTR) run model=tiny_t2i dataset=shapes_captions method=info_cmi method.n_draws=$(T2I_CHECK_DRAWS) \
		'metric=[mask_mass,miou]' dataset.n_samples=$(T2I_CHECK_IMAGES) resume=true hydra.run.dir=$(T2I_OUT)/info_cmi_nouns
	$(PY) scripts/t2i_checks.py --images $(T2I_CHECK_IMAGES) --draws $(T2I_CHECK_DRAWS) --out $(T2I_OUT)/checks

# ---- run ----
.PHONY: smoke example
smoke: setup  ## quick CPU check of the whole pipeline: debug preset (tiny_cnn, 4 samples)
	$(XATTR) run debug=smoke $(ARGS)

example: setup  ## conf/experiment/example.yaml into outputs/run/example (replaced), then its report
	rm -rf outputs/run/example
	$(XATTR) run experiment=example hydra.run.dir=outputs/run/example $(ARGS)
	$(XATTR) report outputs/run/example

# ---- gradients ----
bench-methods: setup  ## gradient baselines: passes, s/img, time / (passes x forward-backward), vs bare Captum
	$(PY) scripts/bench_methods.py --quick

# ---- coiba ----
# CoIBA (Hong et al., CVPR 2025): Tables 1-2, difficulty figure, layer-range ablation, layer similarity, benchmark.
# SCALE=tiny: shapes + trained tiny_vit on CPU (minutes); SCALE=paper: pretrained ViT-B/DeiT-B/Swin-B on
# ImageNet (offline it stops with a one-line error). Methods without a conf/method/<name>.yaml are skipped.
COIBA_METHODS ?= coiba iba_vit iba_star rollout generic_attention chefer_lrp beyond_intuition vit_cx iia gradcam
COIBA_SWIN_METHODS ?= coiba iba_vit iba_star vit_cx
COIBA_OUT ?= outputs/coiba/$(SCALE)
coiba_comma := ,
coiba_empty :=
coiba_space := $(coiba_empty) $(coiba_empty)
coiba_list = $(subst $(coiba_space),$(coiba_comma),$(strip $(foreach m,$(1),$(if $(wildcard conf/method/$(m).yaml),$(m)))))
COIBA_VIT_MODELS_paper := vit_b16,deit_b16
COIBA_VIT_MODELS_tiny := tiny_vit

.PHONY: coiba-table1 coiba-table2 coiba-difficulty coiba-ablation coiba-similarity coiba-all

coiba-table1: setup  ## CoIBA Table 1: insertion/deletion, 3.5% steps (SCALE=tiny|paper)
	$(XATTR) run -m experiment=coiba_table1_$(SCALE) model=$(COIBA_VIT_MODELS_$(SCALE)) \
		method=$(call coiba_list,$(COIBA_METHODS)) resume=true hydra.sweep.dir=$(COIBA_OUT)/table1/vit
	@if [ "$(SCALE)" = paper ]; then $(XATTR) run -m experiment=coiba_table1_paper model=swin_b \
		method=$(call coiba_list,$(COIBA_SWIN_METHODS)) resume=true hydra.sweep.dir=$(COIBA_OUT)/table1/swin; fi
	$(XATTR) report $(COIBA_OUT)/table1 --paper coiba --paper-table table1 --out $(COIBA_OUT)/table1

coiba-table2: setup  ## CoIBA Table 2: ROAD MoRF/LeRF at 20/40/60/80% (SCALE=tiny|paper)
	$(XATTR) run -m experiment=coiba_table2_$(SCALE) model=$(COIBA_VIT_MODELS_$(SCALE)) \
		method=$(call coiba_list,$(COIBA_METHODS)) resume=true hydra.sweep.dir=$(COIBA_OUT)/table2
	$(XATTR) report $(COIBA_OUT)/table2 --paper coiba --paper-table table2 --out $(COIBA_OUT)/table2

coiba-difficulty: setup  ## CoIBA Fig. 7: scores per confidence bin, 20 bins (paper: IN-1k, IN-A, IN-R)
	$(XATTR) run -m experiment=coiba_difficulty_$(SCALE) method=$(call coiba_list,coiba iba_vit iba_star beyond_intuition iia chefer_lrp) \
		$(if $(filter paper,$(SCALE)),dataset=imagenet$(coiba_comma)imagenet_a$(coiba_comma)imagenet_r,) \
		resume=true hydra.sweep.dir=$(COIBA_OUT)/difficulty
	$(XATTR) report $(COIBA_OUT)/difficulty --by dataset --difficulty --bins 20 --out $(COIBA_OUT)/difficulty

coiba-ablation: setup  ## CoIBA layer-range ablation (start x end multirun) grouped by both keys
	$(XATTR) run -m experiment=coiba_ablation_$(SCALE) \
		$(if $(filter paper,$(SCALE)),method.layers.start=0$(coiba_comma)2$(coiba_comma)4$(coiba_comma)6 method.layers.end=8$(coiba_comma)10$(coiba_comma)12,method.layers.start=0$(coiba_comma)1$(coiba_comma)2$(coiba_comma)3 method.layers.end=4$(coiba_comma)5$(coiba_comma)6) \
		resume=true hydra.sweep.dir=$(COIBA_OUT)/ablation
	$(XATTR) report $(COIBA_OUT)/ablation --by method.layers.start --by method.layers.end --out $(COIBA_OUT)/ablation

coiba-similarity: setup  ## single-layer IBA maps across layers: SSIM + linear CKA (CoIBA Figs. 1, 10)
	$(PY) scripts/layer_similarity.py --scale $(SCALE) --out $(COIBA_OUT)/similarity

coiba-all: coiba-table1 coiba-table2 coiba-difficulty coiba-ablation coiba-similarity  ## every CoIBA target

# ---- infodecomp: relation testing (Tables 1-2) and word localisation (Table 3) ----
# Kong et al., ICLR 2024 (docs/infodecomp.md). SCALE=tiny: tiny_t2i (trained on first use) + shapes_captions on CPU;
# SCALE=paper: Stable Diffusion 2.1 base on ARO / COCO-IT on a GPU (offline: one line naming the missing weights
# or files). Sizes: INFODECOMP_ARO_IMAGES, INFODECOMP_LOC_SAMPLES, INFODECOMP_DRAWS (the paper's 50,100,200).
INFODECOMP_OUT ?= outputs/infodecomp/$(SCALE)
INFODECOMP_ARO_IMAGES ?= 200
INFODECOMP_ARO_DRAWS ?= 100
INFODECOMP_LOC_SAMPLES ?= 100
INFODECOMP_DRAWS ?= 50,100,200
INFODECOMP_WORDS ?= nouns,adjectives
INFODECOMP_ARO_DATASETS_paper := aro_vg_relation,aro_vg_attribution,aro_coco_order,aro_flickr_order
INFODECOMP_SIZE_tiny = dataset.n_samples=$(1)
INFODECOMP_SIZE_paper =
.PHONY: infodecomp-aro infodecomp-localization infodecomp-contrastive

infodecomp-contrastive: setup  ## the tiny contrastive dual encoder (cached; a minute or two) for infodecomp-aro SCALE=tiny
	$(XATTR) train task=contrastive dataset=shapes_captions

infodecomp-aro: setup $(if $(filter tiny,$(SCALE)),infodecomp-contrastive)  ## Info-Decomp Tables 1-2: relation tests, Info vs DiffITM vs contrastive (SCALE=tiny|paper)
	$(XATTR) run -m experiment=infodecomp_aro_$(SCALE) 'metric=[aro,aro_contrastive]' metric.aro.n_draws=$(INFODECOMP_ARO_DRAWS) \
		$(if $(filter paper,$(SCALE)),dataset=$(INFODECOMP_ARO_DATASETS_paper),) \
		$(call INFODECOMP_SIZE_$(SCALE),$(INFODECOMP_ARO_IMAGES)) resume=true hydra.sweep.dir=$(INFODECOMP_OUT)/aro
	$(PY) scripts/infodecomp_aro_report.py $(INFODECOMP_OUT)/aro --out $(INFODECOMP_OUT)/aro

# one run folder per (method, draws, word type, split); tiny: the val split chooses the fair protocol's threshold
INFODECOMP_LOC_AXES_tiny = dataset.words=$(INFODECOMP_WORDS) dataset.split=val,test
INFODECOMP_LOC_AXES_paper =
INFODECOMP_LOC = $(XATTR) run -m experiment=infodecomp_localization_$(SCALE) 'metric=[miou,mask_mass]' \
	$(INFODECOMP_LOC_AXES_$(SCALE)) $(call INFODECOMP_SIZE_$(SCALE),$(INFODECOMP_LOC_SAMPLES)) resume=true
infodecomp-localization: setup  ## Info-Decomp Table 3: word localisation mIoU, oracle and fair thresholds (SCALE=tiny|paper)
	$(INFODECOMP_LOC) method=info_cmi,info_mi,attention_information method.n_draws=$(INFODECOMP_DRAWS) \
		hydra.sweep.dir=$(INFODECOMP_OUT)/localization/information
	$(INFODECOMP_LOC) method=daam method.steps=$(INFODECOMP_DRAWS) hydra.sweep.dir=$(INFODECOMP_OUT)/localization/daam
	$(INFODECOMP_LOC) method=whole_image hydra.sweep.dir=$(INFODECOMP_OUT)/localization/whole_image
	$(PY) scripts/infodecomp_localization_report.py $(INFODECOMP_OUT)/localization --out $(INFODECOMP_OUT)/localization

# ---- infodecomp: prompt intervention ----
# Info-Decomp (Kong et al., ICLR 2024) Sec. 3.3, Fig. 3 / Table 4: Heun inversion of each latent under its caption,
# regeneration under the caption / the word omitted / the word swapped; Pearson r of the change with the word's CMI
# and with its attention (image and pixel level, bootstrap error bars). SCALE=tiny: the trained tiny_t2i on 100
# shapes_captions test (image, noun) samples, CPU; SCALE=paper: SD 2.1 on COCO100-IT (offline: one-line error).
# INTERVENTION_ARGS: script options and Hydra overrides, e.g. `dataset.n_samples=20 method.n_draws=50 device=cuda`.
INTERVENTION_OUT ?= outputs/infodecomp/$(SCALE)/intervention
INTERVENTION_ARGS ?=
.PHONY: infodecomp-intervention
infodecomp-intervention: setup  ## Info-Decomp Table 4 / Fig. 3: prompt intervention vs CMI and attention (SCALE=tiny|paper)
	$(PY) scripts/infodecomp_intervention.py --scale $(SCALE) --out $(INTERVENTION_OUT) $(INTERVENTION_ARGS)
	$(XATTR) report $(INTERVENTION_OUT) --paper infodecomp --paper-table table4 --out $(INTERVENTION_OUT)

# ---- diffig ----
# DiffIG and the path-attribution family (issue 15): every path method, one run each, scored with DiffID,
# insertion, deletion (and seg ratio at SCALE=tiny: shapes' exact masks); the report adds paired differences
# DiffIG − method on the same images and each method's completeness error (written per image by the run task);
# random_map is the chance row (docs/paths.md, "Tiny table").
# SCALE=tiny: tiny_cnn on 100 shapes test images, CPU, about 2 h on 2 cores (the path model trains on first use);
# SCALE=paper: 500 ImageNet val images, VGG16 / ResNet18 / GoogLeNet / ViT-B/16 (needs weights + data).
DIFFIG_METHODS ?= integrated_gradients blur_ig guided_ig expected_gradients ig2 spi diffig random_map
DIFFIG_OUT ?= outputs/diffig/$(SCALE)
DIFFIG_METRICS_tiny := diffid,insertion,deletion,seg_ratio
DIFFIG_METRICS_paper := diffid,insertion,deletion
DIFFIG_MODELS_tiny := tiny_cnn
DIFFIG_MODELS_paper := vgg16,resnet18,googlenet,vit_b16
DIFFIG_AVAILABLE = $(subst $(diffib_space),$(diffib_comma),$(strip $(foreach m,$(DIFFIG_METHODS),$(if $(wildcard conf/method/$(m).yaml),$(m)))))

.PHONY: diffig-table diffig-controllability path-model
path-model: setup  ## DiffIG's path diffusion model (cached; DiffIG also trains it on first use)
	$(XATTR) train task=path_diffusion

diffig-table: setup  ## DiffIG vs every path method: DiffID, insertion, deletion (+ seg ratio), completeness; SCALE=tiny|paper
	$(XATTR) run -m experiment=diffig_$(SCALE) model=$(DIFFIG_MODELS_$(SCALE)) method=$(DIFFIG_AVAILABLE) \
		'metric=[$(DIFFIG_METRICS_$(SCALE))]' resume=true hydra.sweep.dir=$(DIFFIG_OUT)/table
	$(XATTR) report $(DIFFIG_OUT)/table --out $(DIFFIG_OUT)/table --paired diffig

diffig-controllability: setup  ## DiffIG region / smoothness / faithfulness guidance measured (tiny_cnn, shapes, < 5 min)
	$(PY) scripts/diffig_controllability.py --out $(DIFFIG_OUT)/controllability
