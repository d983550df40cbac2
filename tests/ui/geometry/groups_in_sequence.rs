// Inside a sequence, 3 groups do not divide the 1x1 conv's 8 input channels.
#[rep::block]
pub struct Seq {
    branch: (Conv<8, 12, 1, 1, Groups<3>>, Bn<12>, Conv<12, 12, 3, 1, Groups<3>>),
}

fn main() {}
