"""The optimized modules the notebooks swap in for their from-scratch versions."""

from mmcourse.nn.attention import MultiHeadAttention, key_padding_mask
from mmcourse.nn.audio import AudioEncoder, AudioFrontEnd, summarize_frames
from mmcourse.nn.causal_conv import CausalConv1d, ConvQueue, receptive_field
from mmcourse.nn.contrastive import InfoNCE, info_nce, similarity
from mmcourse.nn.decoder import KVCache, TextDecoder, TransformerDecoderLayer
from mmcourse.nn.denoiser import Denoiser
from mmcourse.nn.diffusion import (
    NoiseSchedule,
    ancestral_sample,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    diffusion_loss,
    guide,
    guided,
    predict_x0,
)
from mmcourse.nn.fusion import METHODS as FUSION_METHODS
from mmcourse.nn.fusion import make_fusion
from mmcourse.nn.gan import Discriminator, Generator, discriminator_loss, gan_step, generator_loss
from mmcourse.nn.generation import beam_search, generate
from mmcourse.nn.image import ImageEncoder
from mmcourse.nn.lora import LoRALinear, apply_lora, lora_layers, merge_lora, unmerge_lora
from mmcourse.nn.mulaw import (
    mu_law_bin_edges,
    mu_law_compand,
    mu_law_decode,
    mu_law_encode,
    mu_law_expand,
    quantize_linear,
)
from mmcourse.nn.multimodal import MultimodalClassifier, MultiTaskLoss
from mmcourse.nn.positional import PositionalEncoding, sinusoidal_encoding
from mmcourse.nn.sampling import filter_logits, sample, top_k_filter, top_p_filter
from mmcourse.nn.sequence import SequenceEncoder
from mmcourse.nn.text import TextEncoder
from mmcourse.nn.transformer import TransformerEncoder, TransformerEncoderLayer, masked_mean
from mmcourse.nn.tts import DigitTTS, mel_templates, mel_to_waveform
from mmcourse.nn.wavenet import WaveNet, WaveNetBlock, WaveNetCache, bits_per_sample
