"""Trainers of the networks the suite needs: ``classifier`` (tiny_cnn / tiny_vit), ``denoiser`` (DiffIB's MMSE
eps-denoiser), ``alpha_unet`` (DiffIB's amortized alpha-U-Net). ``conf/task/<name>.yaml`` names each trainer
class by ``_target_`` and holds its hyper-parameters (the one source of their defaults); ``_loop`` is what the
loops share. A trainer never imports a method or a task (docs/architecture.md)."""
