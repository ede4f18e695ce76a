//! SGD with momentum in PyTorch's form (BIT_SPEC §5.1, detail 15): buf ← μ·buf + g,
//! p ← p − lr·buf, with decoupled-from-nothing L2 weight decay g ← g + wd·p as
//! `torch.optim.SGD(weight_decay=wd)`. Written out rather than libtorch's optimizer so the
//! momentum buffers can be checkpointed by name and a resumed run continues bit for bit.

use tch::Tensor;

/// One parameter and its momentum buffer.
#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    buffer: Tensor,
}

#[derive(Debug)]
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    slots: Vec<Slot>,
}

impl Sgd {
    /// `params`: every trainable tensor with its name (sorted by the caller for a stable order).
    pub fn new(params: Vec<(String, Tensor)>, momentum: f64, weight_decay: f64) -> Sgd {
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let buffer = param.zeros_like();
                Slot { name, param, buffer }
            })
            .collect();
        Sgd { momentum, weight_decay, slots }
    }

    /// One update at `lr` from the accumulated gradients, then zeroes them. A zero buffer
    /// makes the first update buf = g, exactly PyTorch's first step. With lr = 0 (BiT's step
    /// 0) the parameters stay but the buffers take the gradient, as in PyTorch.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                let mut g = grad.shallow_clone();
                if self.weight_decay != 0.0 {
                    g = &g + &slot.param * self.weight_decay;
                }
                let _ = slot.buffer.g_mul_scalar_(self.momentum).g_add_(&g);
                let _ = slot.param.g_sub_(&(&slot.buffer * lr));
            }
        });
        self.zero_grad();
    }

    pub fn zero_grad(&mut self) {
        for slot in &mut self.slots {
            let mut grad = slot.param.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// The momentum buffers by parameter name (for checkpoints).
    pub fn buffers(&self) -> Vec<(String, Tensor)> {
        self.slots.iter().map(|s| (s.name.clone(), s.buffer.shallow_clone())).collect()
    }

    /// Restores buffers by name; every parameter must be present with its shape.
    pub fn load_buffers(&mut self, buffers: &[(String, Tensor)]) -> Result<(), String> {
        for slot in &mut self.slots {
            let Some((_, t)) = buffers.iter().find(|(n, _)| n == &slot.name) else {
                return Err(format!("no momentum buffer for {}", slot.name));
            };
            if t.size() != slot.buffer.size() {
                return Err(format!(
                    "momentum buffer {} has shape {:?}, the parameter {:?}",
                    slot.name,
                    t.size(),
                    slot.buffer.size()
                ));
            }
            tch::no_grad(|| slot.buffer.copy_(&t.to_device(slot.buffer.device())));
        }
        Ok(())
    }
}
