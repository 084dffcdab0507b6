//! Any bytes as a request body for each endpoint: parse_body must answer Ok or a 4xx problem,
//! never panic; prompt token counting must cope with whatever parsed.
#![no_main]
use custos_gateway::call::{parse_body, Endpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for endpoint in [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
    ] {
        if let Ok((body, model, _, _)) = parse_body(endpoint, data) {
            let prompt = match endpoint {
                Endpoint::ChatCompletions => custos_gateway::tokens::chat_prompt(&body),
                Endpoint::Completions => custos_gateway::tokens::completion_prompt(&body),
                Endpoint::Embeddings => custos_gateway::tokens::embedding_input(&body),
                Endpoint::Responses => custos_gateway::tokens::responses_prompt(&body),
            };
            let _ = prompt.count(&model);
        }
    }
});
