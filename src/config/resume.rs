//! What a resumed run may change of its saved configuration, and what it may not.

use super::{ConfigChange, TrainConfig};

impl TrainConfig {
    /// `self` (a saved run's configuration) with what a resumed run may change taken from
    /// `asked`: its end, target loss and its screen, precision, samples and evaluation
    /// interval. None of them changes the weights a step computes from the state before it
    /// (bf16 is a precision of the same computation).
    pub fn resumed_with(&self, asked: &TrainConfig) -> TrainConfig {
        let mut c = self.clone();
        c.run.stop = asked.run.stop;
        c.run.target_loss = asked.run.target_loss;
        c.run.val_screen = asked.run.val_screen;
        c.run.precision = asked.run.precision;
        c.run.samples = asked.run.samples.clone();
        c.run.eval_every = asked.run.eval_every;
        c
    }

    /// The settings of `asked` that define a run and differ from this saved run's (everything
    /// but what [`TrainConfig::resumed_with`] takes), by key. Compared as the stored JSON, so a
    /// setting added later is covered without a list to keep.
    pub fn changes_on_resume(&self, asked: &TrainConfig) -> Vec<ConfigChange> {
        let json = |c: &TrainConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("a configuration serialises to a JSON object"),
        };
        let (saved, asked) = (json(self), json(&asked.resumed_with(self)));
        let keys: std::collections::BTreeSet<&String> = saved.keys().chain(asked.keys()).collect();
        let show = |v: Option<&serde_json::Value>| v.map_or("nothing".into(), |v| v.to_string());
        keys.into_iter()
            .filter(|k| saved.get(*k) != asked.get(*k))
            .map(|k| ConfigChange {
                key: k.clone(),
                saved: show(saved.get(k)),
                asked: show(asked.get(k)),
            })
            .collect()
    }
}
